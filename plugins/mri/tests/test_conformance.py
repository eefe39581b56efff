import pytest
from test_lesion_volume import small_model

import c3_mri.plugin
from c3_core.testing import parametrize_with_checks
from c3_mri.editors.lesion_volume import MriLesionVolume


@pytest.fixture(autouse=True)
def _lesion_volume_small_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """mri.lesion_volume ships no weights (they come from `c3 editor fit`): its checks run on the
    small test weights of test_lesion_volume.py, made once per session."""
    monkeypatch.setattr(MriLesionVolume, "load_model", classmethod(lambda cls: small_model()))


@parametrize_with_checks(c3_mri.plugin, internal=True)  # released with c3-core: may import its modules
def test_conformance(check) -> None:  # noqa: ANN001
    check()
