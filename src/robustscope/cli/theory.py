"""``robustscope theory``: the closed-form and linear-model results of tsipras2019."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from robustscope.cli.options import JsonFlag
from robustscope.cli.output import Column, TableView, emit

__all__ = ["app"]

app = typer.Typer(
    help="tsipras2019's theory: exact accuracies on its distribution, Theorems 2.1 and 2.2, "
    "linear models on binary MNIST.",
    no_args_is_help=True,
)


def _pct(v: Any) -> str:
    return f"{100 * float(v):.2f}"


def _mc(value: str, se: str) -> Column:
    return Column(f"{value} MC (±se)", lambda r: f"{_pct(r[value + '_mc'])} ± {_pct(r[se])}")


@app.command("tsipras")
def tsipras_cmd(
    d: Annotated[int, typer.Option("--d", help="number of non-robust features")] = 1000,
    p: Annotated[str, typer.Option("--p", help="P(x_1 = y), in [0.5, 1]")] = "0.95",
    eta: Annotated[str, typer.Option("--eta", help="mean shift η > 0 of x_2..x_{d+1}")] = "0.1",
    eps: Annotated[
        str | None, typer.Option("--eps", help="extra ℓ∞ radii besides 2η, e.g. 0.05,0.1")
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Monte-Carlo draws")] = 100_000,
    seed: Annotated[int, typer.Option(help="seed of the Monte-Carlo draws")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Exact (and Monte-Carlo) standard and ℓ∞ robust accuracy of f_avg, sign(x_1) and the Bayes
    classifier on tsipras2019's distribution, Theorem 2.1 at ε = 2η, Theorem 2.2's SVMs and the
    linear trade-off frontier."""
    from robustscope.params import parse_eps_list, positive_int
    from robustscope.theory.summary import summarise
    from robustscope.theory.tsipras import Distribution

    dist = Distribution.create(d, p, eta)
    extra = parse_eps_list(eps, "--eps") if eps else []
    result = summarise(dist, extra, n=positive_int(n, "--n"), seed=seed).to_dict()
    t21, t22 = result["theorem21"], result["theorem22"]
    holds = "holds" if t21["holds"] else f"VIOLATED by {t21['violations']}"
    emit(
        result,
        as_json,
        f"[bold]D[/bold]: d = {dist.d}, p = {dist.p:g}, η = {dist.eta:g} (ℓ∞, unbounded box); "
        f"Monte Carlo on {n:,} draws",
        TableView(
            [
                Column("classifier", "classifier"),
                Column("ε", "eps", lambda v: f"{v:g}"),
                Column("standard %", "standard", _pct),
                _mc("standard", "standard_se"),
                Column("robust %", "robust", _pct),
                _mc("robust", "robust_se"),
            ],
            rows=result["classifiers"],
            title="exact accuracies (tsipras2019 §2.1)",
        ),
        f"[bold]Theorem 2.1[/bold] at ε = 2η = {2 * dist.eta:g}: robust ≤ p/(1−p)·δ — {holds} "
        f"(largest robust − bound on the frontier: {t21['frontier_max_excess']:+.2e})",
        TableView(
            [
                Column("standard ≥", "standard_at_least", lambda v: f"{100 * v:g}%"),
                Column("frontier robust %", "robust", _pct),
                Column("w = (a, b·1) only %", "robust_symmetric", _pct),
                Column("Thm 2.1 bound %", "bound", _pct),
            ],
            rows=result["frontier"],
            title="the linear trade-off frontier at ε = 2η",
        ),
        f"[bold]Theorem 2.2[/bold] (hypotheses {'met' if t22['hypotheses'] else 'NOT met'}): "
        f"standard SVM {_pct(t22['standard_svm']['standard'])}% / "
        f"{_pct(t22['standard_svm']['adversarial'])}% adversarial; adversarial SVM "
        f"{_pct(t22['adversarial_svm']['standard'])}% / "
        f"{_pct(t22['adversarial_svm']['adversarial'])}%",
    )


@app.command("mnist")
def mnist_cmd(
    eps: Annotated[str, typer.Option("--eps", help="ℓ∞ radius (pixels in [0, 1])")] = "0.2",
    data: Annotated[
        str, typer.Option(help="auto (mnist if present, else mnist-5k), mnist, mnist-5k")
    ] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """tsipras2019 App. E on binary MNIST (5 vs 7): Table 5 beside the paper's, and Fig. 5's
    top-k curve, for logistic regression with exact ℓ∞ adversarial training."""
    from robustscope.theory.binary_mnist import run

    result = run(eps, data=data).to_dict()
    t5 = result["table5"]
    rows = [
        {"training": name, "source": source, **pair[source]}
        for name, pair in t5["rows"].items()
        for source in ("ours", "paper")
    ]
    keys = ("standard_train", "standard_test", "adversarial_train", "adversarial_test", "w_l1")
    cols = [Column("training", "training"), Column("source", "source")]
    cols += [Column(k.replace("_", " "), k, lambda v: f"{v:.2f}") for k in keys]
    ratio = t5["scale_free"]["l1_ratio_standard_over_adversarial"]
    topk = result["figure5"]["topk"]
    emit(
        result,
        as_json,
        TableView(
            cols, rows=rows, title=f"Table 5 (ε = {t5['eps']:g}; {t5['dataset']})", compact=True
        ),
        f"standard ‖w‖₁ / adversarial ‖w‖₁: {ratio['ours']:.2f} (paper {ratio['paper']:.2f})",
        TableView(
            [
                Column("k", "k"),
                Column("standard %", "standard", lambda v: f"{v:.2f}"),
                Column("adversarial %", "adversarial", lambda v: f"{v:.2f}"),
            ],
            rows=[
                {"k": k, "standard": s, "adversarial": a}
                for k, s, a in zip(
                    topk["k"], topk["standard_test"], topk["adversarial_test"], strict=True
                )
            ],
            title="Fig. 5(c): a standard model on the k most correlated pixels (test)",
        ),
    )
