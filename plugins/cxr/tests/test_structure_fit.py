"""`c3 editor fit` for the 2-D structure editors: a tiny fit of cxr.heart_area (4 cases at 16 px,
4 fine-tuning steps), loaded back with the editor option weights=PATH; 3-D-only options are
refused by the CLI."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.editors.structure import AreaParams, FineTuneConfig
from c3_core.editors.structure_fit import fit_command, load_area_model
from c3_cxr.data.demo import make_demo_dataset
from c3_cxr.editors.structure import CxrHeartArea


class _QuickHeart(CxrHeartArea):
    tune_config = FineTuneConfig(steps=4, batch_size=4)  # the test's budget; the editor's default is 150 steps


class _Host:
    def registry(self, kind: str) -> Any:
        return type("R", (), {"get": staticmethod(lambda op_id: type("C", (), {"load": staticmethod(lambda: _QuickHeart)})())})()


def test_editor_fit_writes_weights_the_editor_loads(tmp_path: Any) -> None:
    out = tmp_path / "heart.safetensors"
    lines: list[str] = []
    assert fit_command("cxr.heart_area", out, size=16, epochs=1, limit=4, host=_Host(), echo=lines.append) == 0, lines
    assert any("seg epoch 1" in line for line in lines) and not (tmp_path / "heart.safetensors.ckpt").exists()
    model = load_area_model(out)
    assert model.config.size == 16 and model.structures == ("lungs", "heart")
    from c3_core.batch import collate

    ds = make_demo_dataset(split="test")
    batch = collate([ds[0]])
    edited = CxrHeartArea(weights=str(out)).apply(batch, [AreaParams(1.2)])
    assert edited.image.shape == batch.image.shape
    assert fit_command("cxr.heart_area", out, host=_Host(), echo=lines.append) == 2 and "already exists" in lines[-1]


def test_editor_fit_refuses_a_grid_for_2d(tmp_path: Any) -> None:
    result = CliRunner().invoke(app, ["editor", "fit", "cxr.heart_area", "--out", str(tmp_path / "x.safetensors"), "--grid", "8,8,8"])
    assert result.exit_code == 2 and "--grid" in result.output
