import c3_mri.plugin
from c3_core.testing import parametrize_with_checks


@parametrize_with_checks(c3_mri.plugin, internal=True)  # released with c3-core: may import its modules
def test_conformance(check) -> None:  # noqa: ANN001
    check()
