import pytest

import c3_ultrasound.plugin
from c3_core.testing import plugin_checks


@pytest.mark.parametrize("check", plugin_checks(c3_ultrasound.plugin), ids=str)
def test_conformance(check) -> None:  # noqa: ANN001
    check()
