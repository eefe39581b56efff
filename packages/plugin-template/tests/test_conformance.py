import c3_plugin_template.plugin
from c3_core.testing import parametrize_with_checks


# a check your plugin cannot pass yet goes in expected_failed_checks={"example.contrast::batch_invariant": "why"}:
# it is reported as xfailed, and as a failure once it passes, so the entry is removed then
@parametrize_with_checks(c3_plugin_template.plugin)
def test_conformance(check) -> None:  # noqa: ANN001
    check()
