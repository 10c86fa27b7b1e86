"""The support history (trufl/history.py, its file: trufl/history_format.py) and its animation
(trufl/reporting/animation.py):
frames at the configured steps, values that are the model's, a GIF with one frame per
record, and drawn artists that carry exactly the logged numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from .conftest import toy
from trufl.history import SupportHistory
from trufl.history_format import FILENAME, read_history
from trufl.reporting.animate_toy import main as animate_main
from trufl.reporting.animation import animate, draw_frame, frame_masses
from trufl.model import LikelihoodModule
from trufl.run import run

#: a few steps, a frame every 3: steps 0, 3, 6 and the last, 7
TINY = ("trainer.max_steps=7", "trainer.val_check_interval=5", "callbacks.support_history.every_n_steps=3",
        "callbacks.support_history.grid_points_2d=24", "dataset.train_size=512", "dataset.val_size=256",
        "dataset.test_size=256", "eval.iw_samples=2")
RUNS = {
    "trufl_d1": ("flow=trufl", "flow.dim=1", "recon_weight=10"),
    "trufl_d2": ("flow=trufl", "flow.dim=2", "recon_weight=10"),
    "catnf_d1": ("flow=catnf", "flow.dim=1"),
}


def logistic_pdf(x):
    return np.exp(-x) / (1 + np.exp(-x)) ** 2


def artists(axes, gid_prefix: str) -> dict:
    """Artists of the supports panel whose gid starts with ``gid_prefix``, by category."""
    found = [a for a in [*axes.patches, *axes.lines] if (a.get_gid() or "").startswith(gid_prefix)]
    return {int(a.get_gid().rsplit("-", 1)[1]): a for a in found}


@pytest.fixture(params=sorted(RUNS))
def toy_run(request, make_cfg, tmp_path):
    out = tmp_path / request.param
    results = run(make_cfg(*toy(*RUNS[request.param], *TINY, "callbacks.support_history.render=true"), out=out))
    return request.param, out, results


def test_history_has_one_record_per_frame_step_and_the_models_values(toy_run):
    name, out, _ = toy_run
    history = read_history(out)
    meta, frames = history["meta"], history["frames"]
    assert [f["step"] for f in frames] == [0, 3, 6, 7]
    assert [v["step"] for v in history["val"]] == [5]  # validations during fit (every 5 steps)
    assert meta["probs"] == [0.1, 0.2, 0.3, 0.4] and meta["dim"] == int(name[-1])
    assert frames[0]["train"] is None and all(set(f["train"]) == {"kl_bits", "recon_bits", "determinism"}
                                               for f in frames[1:])
    axis = np.asarray(meta["axis"])
    prior = np.asarray(frames[-1]["prior"])
    expected_prior = logistic_pdf(axis) if meta["dim"] == 1 else np.outer(logistic_pdf(axis), logistic_pdf(axis))
    np.testing.assert_allclose(prior, expected_prior, rtol=1e-5)  # the toy's standard logistic prior
    summary = json.loads((out / "results.json").read_text())["dequantiser"]
    last = frames[-1]
    if name.startswith("trufl"):  # the last frame's boxes are the final model's (logit of the CDF bounds)
        lower = np.array(summary["box_lower"])
        np.testing.assert_allclose(last["boxes"]["lo"], np.log(lower / (1 - lower)), atol=1e-5)
        np.testing.assert_allclose(last["summary"]["box_mass"], summary["box_mass"], atol=1e-7)
    else:  # CatNF's q(z|k) on the grid is the logistic of its final loc / log-scale
        loc, scale = np.array(summary["loc"])[:, 0], np.exp(np.array(summary["log_scale"]))[:, 0]
        expected = logistic_pdf((axis[None] - loc[:, None]) / scale[:, None]) / scale[:, None]
        np.testing.assert_allclose(last["density"], expected, rtol=1e-5, atol=1e-12)
        assert last["boxes"] is None


def test_animation_has_one_frame_per_record_and_draws_the_logged_numbers(toy_run):
    name, out, _ = toy_run
    history = read_history(out)
    frames, meta = history["frames"], history["meta"]
    with Image.open(out / "support.gif") as gif:  # rendered by the callback at the end of training
        assert gif.n_frames == len(frames)
    with Image.open(out / "support.png") as png:
        assert png.size[0] > 300
    fig = Figure()
    for index, frame in enumerate(frames):
        axes = draw_frame(fig, history, index)
        supports = axes["supports"]
        boxes = artists(supports, "box-")
        if frame["boxes"] is None:
            assert boxes == {}
        else:
            assert len(boxes) == meta["num_categories"]
            for k, rect in boxes.items():
                lo, hi = frame["boxes"]["lo"][k], frame["boxes"]["hi"][k]
                assert rect.get_x() == pytest.approx(lo[0], abs=1e-6)
                assert rect.get_x() + rect.get_width() == pytest.approx(hi[0], abs=1e-6)
                if meta["dim"] == 2:
                    assert rect.get_y() == pytest.approx(lo[1], abs=1e-6)
                    assert rect.get_y() + rect.get_height() == pytest.approx(hi[1], abs=1e-6)
        if meta["dim"] == 1:
            lines = artists(supports, "density-")
            assert sorted(lines) == list(range(meta["num_categories"]))
            for k, line in lines.items():
                np.testing.assert_array_equal(line.get_xdata(), meta["axis"])
                np.testing.assert_array_equal(line.get_ydata(), frame["density"][k])
        masses = artists(axes["masses"], "mass-")
        expected = np.array([frame_masses(meta, f)[0] for f in frames[: index + 1]])
        for k, line in masses.items():
            np.testing.assert_array_equal(line.get_ydata(), expected[:, k])
        if name.startswith("trufl"):  # TRUFL's panel is its logged box mass
            np.testing.assert_array_equal(expected[-1], frame["summary"]["box_mass"])
        kl = next(a for a in axes["curves"].lines if a.get_gid() == "train-kl_bits")
        assert list(kl.get_ydata()) == [f["train"]["kl_bits"] for f in frames[1: index + 1]]


def test_two_dimensional_density_grid_is_an_image_with_z1_along_columns(make_cfg, tmp_path):
    """q(z|k) of TRUFL is positive exactly inside box k: row i, column j is (axis[j], axis[i])."""
    out = tmp_path / "d2"
    run(make_cfg(*toy(*RUNS["trufl_d2"], *TINY), out=out))
    history = read_history(out)
    axis = np.asarray(history["meta"]["axis"])
    frame = history["frames"][-1]
    lo, hi = np.array(frame["boxes"]["lo"]), np.array(frame["boxes"]["hi"])
    inside_x = (axis[None, :] >= lo[:, None, 0]) & (axis[None, :] <= hi[:, None, 0])  # [K, G]
    inside_y = (axis[None, :] >= lo[:, None, 1]) & (axis[None, :] <= hi[:, None, 1])
    expected = inside_y[:, :, None] & inside_x[:, None, :]  # [K, rows = z2, columns = z1]
    np.testing.assert_array_equal(np.asarray(frame["density"]) > 0, expected)
    assert not (out / "support.gif").exists()  # render=auto draws only for a W&B run


def test_interrupted_run_keeps_its_frames_and_animates(make_cfg, tmp_path, monkeypatch):
    out = tmp_path / "stopped"
    step = LikelihoodModule.training_step

    def dies_at_step_5(self, batch, batch_idx):  # a run that fails half-way
        if self.global_step == 5:
            raise RuntimeError("stopped at step 5")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(LikelihoodModule, "training_step", dies_at_step_5)
    with pytest.raises(RuntimeError, match="stopped at step 5"):
        run(make_cfg(*toy(*RUNS["trufl_d1"], *TINY, "trainer.max_steps=20"), out=out))
    assert json.loads((out / "results.json").read_text())["status"] == "failed"
    history = read_history(out)
    assert [f["step"] for f in history["frames"]] == [0, 3, 5]  # the frames, and the state where it stopped
    with open(out / FILENAME, "a") as f:  # a SIGKILL mid-line: the line is skipped, the rest stands
        f.write('{"kind": "frame", "step": 9, "boxes"')
    assert [f["step"] for f in read_history(out)["frames"]] == [0, 3, 5]
    (gif, png), = animate_main([str(out), "--out", str(tmp_path / "pictures")])
    assert gif.name == "trufl_d1_r10.gif" and png.is_file()
    with Image.open(gif) as image:
        assert image.n_frames == 3


def test_more_than_two_latent_dimensions_is_refused_by_name(make_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"callbacks.support_history .*flow.dim=3"):
        run(make_cfg(*toy("flow=trufl", "flow.dim=3", *TINY)))


def test_animate_needs_a_history(tmp_path):
    with pytest.raises(SystemExit, match="no support history"):
        animate_main([str(tmp_path)])
    (tmp_path / FILENAME).write_text(json.dumps({"kind": "val", "step": 1, "metrics": {}}) + "\n")
    with pytest.raises(SystemExit, match="no meta record"):
        animate_main([str(tmp_path)])
    with pytest.raises(FileNotFoundError):
        animate(tmp_path / "missing", tmp_path)


def test_wandb_run_gets_the_animation_and_final_frame_as_media(make_cfg, tmp_path):
    out = tmp_path / "wb"
    run(make_cfg(*toy(*RUNS["trufl_d1"], *TINY, "logger=wandb", "logger.mode=offline"), out=out))
    media = [p for p in (out / "wandb").glob("offline-run-*/files/media/*/support/*") if p.is_file()]
    gifs = [p for p in media if p.suffix == ".gif"]
    assert len(gifs) == 1 and gifs[0].read_bytes() == (out / "support.gif").read_bytes()
    assert [p.suffix for p in media if p not in gifs] == [".png"]


@pytest.mark.parametrize("kwargs, key", [({"every_n_steps": 0}, "every_n_steps"), ({"grid_points_2d": 1}, "grid_points_2d"),
                                         ({"z_range": 0.0}, "z_range"), ({"render": "sometimes"}, "render")])
def test_bad_settings_are_refused_by_name(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=f"callbacks.support_history.{key} must be"):
        SupportHistory(tmp_path, **kwargs)


def test_an_overlapping_start_is_named_in_the_figure_and_its_title():
    from trufl.history_format import meta_record
    from trufl.reporting.animate_toy import run_name
    from trufl.reporting.animation import title

    meta = meta_record("TruflDequantiser", 4, 1, 10.0, None, [0.0], 50, 100, init="central")
    assert run_name(meta) == "trufl_d1_r10_central" and "central start" in title(meta, 5)
    grid = meta_record("TruflDequantiser", 4, 1, 10.0, None, [0.0], 50, 100, init="grid")
    assert run_name(grid) == "trufl_d1_r10" and "start" not in title(grid, 5)
    assert run_name(meta_record("CatNFDequantiser", 4, 2, 1.0, None, [0.0], 50, 100)) == "catnf_d2_r1"
