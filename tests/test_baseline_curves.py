"""The faithfulness curves' tool: a run's validation curve exported as step,val_bits (the final
re-validation after training left out), and several curves drawn into one figure."""

from __future__ import annotations

import json

from trufl.reporting.baseline_curves import export_curve, main, read_points


def fake_run(tmp_path, rows, last_step):
    run = tmp_path / "run"
    (run / "csv").mkdir(parents=True)
    lines = ["step,val/nll_bits,train/nll_bits"] + [f"{s},{v if v is not None else ''},{t}" for s, v, t in rows]
    (run / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")
    (run / "results.json").write_text(json.dumps({"global_step": last_step}))
    return run


def test_export_keeps_each_validation_at_its_step_count_and_drops_the_final_revalidation(tmp_path):
    run = fake_run(tmp_path, [(10, None, 5.0), (249, 4.25, 4.3), (499, 3.5, 3.6), (500, 3.49, 3.6)], last_step=500)
    out = tmp_path / "curve.csv"
    export_curve(run, out)
    assert read_points(out) == ([250, 500], [4.25, 3.5])


def test_plot_draws_every_labelled_curve_even_with_an_equals_sign_in_its_label(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("step,val_bits\n250,4.1\n500,3.4\n")
    b.write_text("step,val_bits\n250,4.3\n500,3.5\n")
    out = tmp_path / "curves.png"
    main(["plot", str(out), f"reference code={a}", f"recipe=catnf_lm={b}"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
