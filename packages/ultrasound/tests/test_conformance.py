import c3_ultrasound.plugin
from c3_core.testing import parametrize_with_checks


@parametrize_with_checks(c3_ultrasound.plugin)
def test_conformance(check) -> None:  # noqa: ANN001
    check()
