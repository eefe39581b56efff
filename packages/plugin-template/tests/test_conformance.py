import pytest

import c3_plugin_template.plugin
from c3_core.testing import plugin_checks


@pytest.mark.parametrize("check", plugin_checks(c3_plugin_template.plugin), ids=str)
def test_conformance(check) -> None:  # noqa: ANN001
    check()
