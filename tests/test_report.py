"""`make report`'s table and figure building, on fake CSV logs and metrics (no training); how it names a new page
and refuses an existing one; the results pages in docs/ and their index."""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from poetry_vae.progress import max_time_of, max_time_seconds

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "scripts" / "report.py"
DOCS = ROOT / "docs"
spec = importlib.util.spec_from_file_location("report", REPORT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

FIELDS = ["epoch", "step", "train/loss", "train/elapsed_min", "val/iw_nll_char", "val/elapsed_min"]


def write_log(run: Path, rows: list[dict[str, object]], version: int = 0) -> None:
    path = run / "csv" / f"version_{version}" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def test_experiments_accept_commas_and_spaces_and_refuse_unknown_presets() -> None:
    assert report.parse_experiments(["lm,li2019", "bnvae", "lm"]) == ["lm", "li2019", "bnvae"]
    with pytest.raises(SystemExit, match="nosuch"):
        report.parse_experiments(["lm,nosuch"])


def test_quality_against_minutes_from_csv_logs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_log(run, [{"step": 9, "train/loss": 5.0, "train/elapsed_min": 0.4},
                    {"step": 9, "val/iw_nll_char": 7.0, "val/elapsed_min": 0.5},
                    {"step": 19, "val/iw_nll_char": 6.5, "val/elapsed_min": 1.1}])
    write_log(run, [{"step": 29, "val/iw_nll_char": 6.2, "val/elapsed_min": 1.8}], version=1)  # after a resume
    rows = report.read_csv(run)
    assert report.timed_series(rows, "val/iw_nll_char") == ([0.5, 1.1, 1.8], [7.0, 6.5, 6.2])
    old = tmp_path / "old"  # a run logged before the clock existed: no line, no error
    write_log(old, [{"step": 9, "val/iw_nll_char": 7.0}])
    assert report.timed_series(report.read_csv(old), "val/iw_nll_char") == ([], [])
    figures = tmp_path / "figures"
    name = report.plot_quality_per_minute({"a": rows, "old": report.read_csv(old)}, figures)
    assert name and (figures / name).stat().st_size > 1000
    assert report.plot_quality_per_minute({"old": report.read_csv(old)}, figures, "none.png") is None


def metrics(nll: float, **latent: float) -> dict[str, float]:
    base = {"global_step": 100, "poems_per_s": 250.0, "test/iw_nll_char": nll, "test/iw_ppl": 2.718**nll,
            "test/kl": 9.0, "test/mi": 4.5, "test/active_units": 32, "test/elbo": -130.0}
    return base | {f"test/{k}": v for k, v in latent.items()}


def test_main_table_has_the_latent_columns() -> None:
    table = {"lm": metrics(6.1), "li2019": metrics(6.0, recon_char_acc=0.314, recon_bleu2=0.4, recon_forced_acc=0.52,
                                                   homotopy_distinct=5.5, homotopy_endpoint_diff=17.2,
                                                   prior_distinct_2=0.65, prior_self_bleu=0.2)}
    lines = report.main_table(table, ["li2019", "lm"])
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert "recon chars" in header and "forced chars" in header and "prior self-BLEU" in header and len(header) == 16
    for line in lines[1:]:
        assert line.count("|") == 17
    li = [c.strip() for c in lines[2].strip("|").split("|")]
    assert li[0] == "li2019" and li[9] == "31.4%" and li[11] == "52.0%" and li[12] == "5.50" and li[13] == "17.2"
    lm = [c.strip() for c in lines[3].strip("|").split("|")]
    assert lm[9:] == ["–"] * 7  # measures not computed: shown as missing, not as zero


def test_targets() -> None:
    lm = metrics(6.1)
    good = metrics(6.05, recon_char_acc=0.35, homotopy_distinct=5.2, homotopy_endpoint_diff=16.5,
                   prior_distinct_2=0.7)
    assert report.missed_targets(good, lm) == []
    worse = good | {"test/iw_nll_char": 6.2, "test/kl": 5.5, "test/recon_char_acc": 0.019}
    assert report.missed_targets(worse, lm) == ["IW-NLL ≤ LM", "KL ≥ 8", "reconstruction ≥ 30%"]


def test_homotopy_section_lists_each_vae() -> None:
    lines = report.homotopy_section({"li2019": ["p0", "p1"], "bnvae": ["q0", "q1"]}, ["A", "B"])
    text = "\n".join(lines)
    assert "From A to B" in text and "**li2019**" in text and "| 1 | q1 |" in text


def test_best_checkpoint_is_the_best_saved_score_not_the_newest(tmp_path: Path) -> None:
    """A run resumed in a copied directory keeps two best-*.ckpt files; the report evaluates the better one."""
    import os

    import torch

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    key = "ModelCheckpoint{'monitor': 'val/elbo', 'mode': 'max'}"
    for age, (name, score) in enumerate((("best-epoch213.ckpt", -122.10), ("best-epoch264.ckpt", -122.15))):
        torch.save({"callbacks": {key: {"monitor": "val/elbo", "current_score": torch.tensor(score)},
                                  "Timer": {}}}, folder / name)
        os.utime(folder / name, (1000 + age, 1000 + age))  # the worse one is the newer
    assert report.best_checkpoint(tmp_path / "run").name == "best-epoch213.ckpt"
    (folder / "best-epoch213.ckpt").unlink()
    assert report.best_checkpoint(tmp_path / "run").name == "best-epoch264.ckpt"


def page_args(out_dir: Path, **changes: object) -> argparse.Namespace:
    """The arguments write_markdown reads, as prepare() leaves them."""
    args = argparse.Namespace(budget_min=1.0, iw_samples=5, iw_every=1, seed=0, machine="test", homotopy_pairs=2,
                              prior_samples=2, poems=2, out_dir=out_dir, parallel=2, title="LM against LM",
                              date="2026-12-02", command=report.command_line(["--budget-min", "1", "--name", "x"]))
    return argparse.Namespace(**(vars(args) | changes))


def test_a_table_of_language_models_only_is_written(tmp_path: Path) -> None:
    """`--experiments lm lm_pos` has no VAE: the page names the best LM and lists no VAE lines or targets."""
    args = page_args(tmp_path)
    table = {"lm": metrics(6.1), "lm_pos": metrics(6.2)}
    report.write_markdown(args, table, {}, {}, [], (["", ""], {}), None, None)
    page = (tmp_path / "results.md").read_text("utf-8")
    assert "**Best by test IW-NLL: `lm`**." in page and "Best VAE" not in page and "Targets" in page
    assert "- `lm" not in page  # no target lines: they are for the VAEs


def test_page_starts_with_its_title_date_budget_and_command(tmp_path: Path) -> None:
    argv = ["--budget-min", "7.5", "--title", "`lm` against `lm_pos`", "--parallel", "1"]
    args = page_args(tmp_path, title="`lm` against `lm_pos`", budget_min=7.5, parallel=1, date="2031-01-02",
                     command=report.command_line(argv))
    report.write_markdown(args, {"lm": metrics(6.1), "lm_pos": metrics(6.2)}, {}, {}, [], (["", ""], {}), None, None)
    lines = (tmp_path / "results.md").read_text("utf-8").splitlines()
    assert lines[0] == "# `lm` against `lm_pos`"
    assert "- **Date**: 2031-01-02" in lines[1:6]
    budget = next(line for line in lines[1:6] if line.startswith("- **Budget**: "))
    assert budget.startswith("- **Budget**: 7.5 minutes") and "one run at a time" in budget
    command = next(line for line in lines[1:6] if line.startswith("- **Command**: "))
    assert shlex.split(command.removeprefix("- **Command**: ").strip("`")) == ["python", "scripts/report.py", *argv]


def test_the_page_is_named_by_the_date_and_budget_unless_given_a_name(tmp_path: Path) -> None:
    day = date(2031, 1, 2)
    argv = ["--docs-dir", str(tmp_path), "--budget-min", "7.5", "--experiments", "lm,bnvae"]
    args = report.prepare(report.parse_args(argv), argv, day)
    assert args.name == report.default_name(7.5, day) and args.name.startswith(day.isoformat())
    assert args.out_dir == tmp_path / f"results_{args.name}" and args.date == day.isoformat()
    assert "`lm`" in args.title and "`bnvae`" in args.title and args.title.startswith("7.5-minute")
    names = {report.default_name(budget, when) for budget, when in ((15.0, day), (20.0, day), (20.0, date(2031, 1, 3)))}
    assert len(names) == 3
    (tmp_path / "results_mine").mkdir()  # left empty by a report that stopped before writing: the name is free
    argv = ["--docs-dir", str(tmp_path), "--name", "mine", "--title", "What it compares", "--experiments", "lm"]
    named = report.prepare(report.parse_args(argv), argv, day)
    assert named.out_dir == tmp_path / "results_mine" and named.title == "What it compares"
    assert "--name mine" in named.command
    for bad in ("../escape", "a b", ""):
        with pytest.raises(SystemExit, match="letters, digits"):
            report.page_dir(tmp_path, bad)


def test_an_existing_page_is_refused_before_anything_is_trained(tmp_path: Path, monkeypatch) -> None:
    page = tmp_path / "results_old"
    page.mkdir()
    (page / "results.md").write_text("# old\n", "utf-8")
    trained: list[str] = []
    monkeypatch.setattr(report, "train", lambda experiment, args: trained.append(experiment))
    with pytest.raises(SystemExit, match="results_old already exists") as refused:
        report.main(["--docs-dir", str(tmp_path), "--name", "old", "--experiments", "lm"])
    assert "\n" not in str(refused.value) and str(refused.value).startswith("error: ")
    assert trained == [] and (page / "results.md").read_text("utf-8") == "# old\n"
    (tmp_path / "results_file").write_text("", "utf-8")  # a file where the folder would go
    with pytest.raises(SystemExit, match="results_file already exists"):
        report.refuse_existing(tmp_path / "results_file")


def test_the_refusal_is_one_line_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "results_old" / "figures").mkdir(parents=True)  # figures alone already make the page taken
    prefix = f"refused_{tmp_path.name}_"
    # the shortest budget: were the refusal to come after the start of training, a run would leave its folder
    done = subprocess.run([sys.executable, str(REPORT), "--docs-dir", str(tmp_path), "--name", "old", "--prefix",
                           prefix, "--budget-min", "0.1", "--experiments", "lm", "--parallel", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.strip().count("\n") == 0, done.stderr
    assert "Traceback" not in done.stderr and "results_old" in done.stderr
    assert not list((ROOT / "outputs").glob(f"{prefix}*"))  # nothing trained


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_report_passes_report_name() -> None:
    def report_line(*overrides: str) -> str:
        out = subprocess.run(["make", "-n", "report", *overrides], cwd=ROOT, capture_output=True, text=True).stdout
        return next(line for line in out.splitlines() if "scripts/report.py" in line)

    assert report_line("REPORT_NAME=my_page", "REPORT_BUDGET=7").split()[-4:] == ["--budget-min", "7", "--name",
                                                                                 "my_page"]
    assert "--name" not in report_line()  # the script names the page by the date and budget


def test_a_written_page_is_appended_to_the_index(tmp_path: Path) -> None:
    index = tmp_path / "index.md"
    before = "# Results\n\n## Every results page\n\n- [Old](results_old/results.md) — 2031-01-01\n"
    index.write_text(before, "utf-8")
    args = page_args(tmp_path / "results_new", name="new", title="New against old", date="2031-01-02", budget_min=7.5)
    report.add_to_index(index, report.index_entry(args))
    lines = index.read_text("utf-8").splitlines()
    assert lines[:-1] == before.splitlines()
    assert lines[-1].startswith("- [New against old](results_new/results.md)")
    assert "2031-01-02" in lines[-1] and "7.5 minutes" in lines[-1]
    report.add_to_index(tmp_path / "none.md", "- x")  # no index: none is created
    assert not (tmp_path / "none.md").exists()


def test_results_json_records_paths_relative_to_the_repository() -> None:
    args = page_args(DOCS / "results_x", docs_dir=DOCS, name="x")
    text = report.results_record(args, {"lm": metrics(6.1)}, {}, {})
    recorded = json.loads(text)["args"]
    assert recorded["out_dir"] == "docs/results_x" and recorded["docs_dir"] == "docs" and str(ROOT) not in text


def results_pages() -> list[Path]:
    return sorted(DOCS.rglob("results.md"))


def test_every_results_page_says_what_it_compares_and_how_it_was_made() -> None:
    assert results_pages()
    for page in results_pages():
        lines = page.read_text("utf-8").splitlines()
        assert lines[0].startswith("# ") and lines[0] != "# Results", page
        header = lines[1:8]
        assert any(re.match(r"- \*\*Date\*\*: \d{4}-\d{2}-\d{2}", line) for line in header), page
        assert any(re.match(r"- \*\*Budget\*\*: \d+(\.\d+)? minutes", line) for line in header), page
        assert any(re.match(r"- \*\*Command\*\*: `python scripts/report\.py[ `]", line) for line in header), page


def index_text() -> str:
    return (DOCS / "index.md").read_text("utf-8")


def test_the_index_lists_every_results_page_and_its_links_resolve() -> None:
    text = index_text()
    page_list = text.split("\n## Every results page\n", 1)[1]  # the last section: one line per page
    listed = [(DOCS / link).resolve() for link in re.findall(r"^- \[.+\]\(([^)#]+)\) — \d{4}-\d{2}-\d{2}; ",
                                                              page_list, re.MULTILINE)]
    assert sorted(listed) == sorted(page.resolve() for page in results_pages())
    links = {(DOCS / link).resolve() for link in re.findall(r"\]\(([^)#]+)\)", text)}
    assert all(path.exists() for path in links), [str(p) for p in links if not p.exists()]


def best_rows() -> list[list[str]]:
    """The rows of the index's first table (the current best per goal), as cells."""
    lines = index_text().split("\n## ", 2)[1].splitlines()  # the first section after the title
    rows = [line for line in lines if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def figure_sources(link: str) -> tuple[str, list[float]]:
    """The text of a linked page and, for a JSON file, every number in it."""
    path = DOCS / link
    if path.suffix != ".json":
        return path.read_text("utf-8"), []
    numbers: list[float] = []

    def collect(value: object) -> None:
        if isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                collect(item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            numbers.append(float(value))

    collect(json.loads(path.read_text("utf-8")))
    return "", numbers


def on_source(figure: str, text: str, numbers: list[float]) -> bool:
    """True if ``figure`` (as written, e.g. ``5.737``) is on the page, or is one of the JSON's numbers rounded."""
    if re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", text):
        return True
    decimals = len(figure.split(".")[1])
    return any(f"{value:.{decimals}f}" == figure for value in numbers)


def test_each_figure_in_the_best_table_is_written_on_the_page_it_links() -> None:
    rows = best_rows()
    checked = 0
    for goal, _run, figure, _budget, source in rows:
        figures = re.findall(r"\d+\.\d+", figure)
        links = re.findall(r"\]\(([^)#]+)\)", source)
        assert links or not figures, f"{goal}: figures without a page"
        for link in links:
            text, numbers = figure_sources(link)
            missing = [f for f in figures if not on_source(f, text, numbers)]
            assert not missing, f"{goal}: {missing} not on {link}"
            checked += len(figures)
    assert len(rows) >= 5 and checked >= 10


def test_a_newly_declared_metric_appears_in_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    column = report.Column("test/rhyme_rate", "rhyme", lambda v: f"{v:.2f}", missing="–")
    monkeypatch.setattr(report, "COLUMNS", (*report.COLUMNS, column))
    table = {"lm": metrics(6.1) | {"test/rhyme_rate": 0.875}, "li2019": metrics(6.0)}
    lines = report.main_table(table, ["li2019", "lm"])
    assert lines[0].endswith("| prior self-BLEU | rhyme |") and lines[1].count("---:") == 16
    assert lines[2].endswith("| – |") and lines[3].endswith("| 0.88 |")


def test_the_report_rows_and_chains_are_read_from_the_presets() -> None:
    """EXPERIMENTS: the presets whose composed tags hold `report`; CHAINS: each preset whose composed init_from is
    another preset's last checkpoint."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import poetry_vae.config_nodes  # noqa: F401  registers the structured nodes train.yaml composes

    with initialize_config_dir(str(report.PRESETS.parent), version_base="1.3"):
        cfgs = {name: OmegaConf.to_container(compose("train", overrides=[f"experiment={name}"]))
                for name in report.presets()}
    tagged = tuple(name for name, cfg in cfgs.items() if "report" in cfg["tags"])
    assert tagged == report.EXPERIMENTS
    assert {"lm", "bnvae", "li2019", "aggressive"} <= set(report.EXPERIMENTS)
    sources = {name: str(cfg["init_from"]).split("/")[1] for name, cfg in cfgs.items()
               if str(cfg["init_from"]).startswith("${paths.output_root}/")}
    chains = {name: source for name, source in sources.items() if source in cfgs}  # not a file made by hand
    assert chains == report.CHAINS
    assert report.CHAINS["finetune_vae"] == "pretrain_vae" and report.CHAINS["poet_finetune"] == "poet_cooldown"
    assert report.CHAINS["poet_refit"] == "poet_finetune" and report.CHAINS["poet_cooldown"] == "poet"


def test_the_budget_becomes_lightning_s_max_time_past_a_day() -> None:
    assert max_time_of(15 * 60) == "00:00:15:00"
    assert max_time_of(0.7 * 90 * 60) == "00:01:03:00"
    assert max_time_of(25 * 3600) == "01:01:00:00"  # was "00:01:00:00": an hour where a day was asked
    assert max_time_seconds(max_time_of(25 * 3600)) == 25 * 3600 and max_time_seconds(None) is None


@pytest.mark.parametrize(("argv", "expected"), [
    (["--budget-min", "-1"], "argument --budget-min: -1: expected a value >= 0.1"),  # was a 23 h 59 min run
    (["--budget-min", "0"], "argument --budget-min: 0: expected a value >= 0.1"),
    (["--budget-min", "nan"], "argument --budget-min: nan: expected a finite number"),
    (["--parallel", "0"], "argument --parallel: 0: expected a value >= 1"),
    (["--iw-samples", "2.5"], "argument --iw-samples: '2.5': expected an integer"),
])
def test_a_bad_option_is_refused_before_anything_trains(argv: list[str], expected: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        report.parse_args(argv)
    assert stop.value.code == 2 and expected in capsys.readouterr().err
