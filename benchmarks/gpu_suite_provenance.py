"""Give a report of ``benchmarks/gpu_suite.py`` the fields of a results file (benchmarks/results_io.py)
and the Markdown tables the docs show, without changing what it measured.

``gpu_suite.py`` records its environment (GPU, torch, CUDA, cores) and settings but not the command,
the date or the commit. This script adds them from what is known, and says so in ``notes``:

* ``command``: given on the command line (the one that produced the report, as documented);
* ``date``: the day of the commit that added the report to the repository (``git log``), unless
  ``--date`` gives it; ``machine``: built from the report's ``environment`` (no load average: not
  recorded); ``commit``: ``null`` (not recorded) unless ``--commit`` gives it;
* ``tables``: ``refiner`` (ms per image and peak memory of each refiner path and batch) and, where the
  report has SAM rows, ``sam`` (fp32 and bf16 encoders side by side); ``results``: the figures the docs
  quote, by path.

Every key of the report is kept as it was, so readers of the original format still work.

    python benchmarks/gpu_suite_provenance.py benchmarks/results/gpu_suite_h200.json \\
        --command "PYTHONPATH=src python3 benchmarks/gpu_suite.py --out gpu_suite.json --budget-s 220"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from results_io import ROOT, markdown_table

REFINER_LABELS = {(p, cl): f"{p}{' autocast' if p != 'fp32' and not cl else ''}{' `channels_last`' if cl else ''}"
                  for p in ("fp32", "fp16", "bf16") for cl in (False, True)}
SAM_LABELS = {"vit_b": "ViT-B", "vit_l": "ViT-L (the paper's stage 1)", "vit_h": "ViT-H"}


def refiner_table(rows: list[dict]) -> tuple[str, dict]:
    out, table = {}, []
    for r in rows:
        if r.get("group") != "refiner" or "ms" not in r:
            continue
        per_image = r["ms"] / r["batch"]
        key = f"{r['precision']}{'_cl' if r['channels_last'] else ''}_b{r['batch']}"
        out[key] = {"ms_per_image": per_image, "peak_mb": r["peak_mb"], "img_per_s": r["img_per_s"]}
        table.append([REFINER_LABELS[r["precision"], r["channels_last"]], r["batch"], f"{per_image:.2f}",
                      f"{r['peak_mb']:,.0f}"])
    return markdown_table(["path", "batch", "ms / image", "peak MB"], table), out


def sam_table(rows: list[dict]) -> tuple[str, dict] | None:
    sam = {(r["path"].split()[1], r["precision"]): r for r in rows if r.get("group") == "sam" and "ms" in r}
    if not sam:
        return None
    out, table = {}, []
    for vit in dict.fromkeys(v for v, _ in sam):
        f, b = sam.get((vit, "fp32")), sam.get((vit, "bf16"))
        if not (f and b):
            continue
        out[vit] = {"fp32_ms": f["ms"], "bf16_ms": b["ms"], "bf16_speedup": f["ms"] / b["ms"],
                    "fp32_peak_mb": f["peak_mb"], "bf16_peak_mb": b["peak_mb"]}
        table.append([SAM_LABELS.get(vit, vit), f"{f['ms']:.1f}", f"{b['ms']:.1f}", f"{f['ms'] / b['ms']:.2f}×",
                      f"{f['peak_mb']:,.0f} / {b['peak_mb']:,.0f}"])
    return markdown_table(["encoder", "fp32 ms", "bf16 ms", "bf16 speed-up", "peak MB fp32 / bf16"], table), out


def added_on(path: Path) -> tuple[str | None, str | None]:
    """``(day, short commit)`` of the commit that added ``path``, or ``(None, None)``."""
    out = subprocess.run(["git", "log", "--diff-filter=A", "--format=%h %ad", "--date=format:%Y-%m-%d", "--",
                          str(path)], cwd=ROOT, capture_output=True, text=True).stdout.split()
    return (out[-1], out[-2]) if len(out) >= 2 else (None, None)


def convert(path: Path, command: str, date: str | None = None, commit: str | None = None) -> dict:
    report = json.loads(path.read_text())
    if "environment" not in report or "rows" not in report:
        raise SystemExit(f"{path}: not a gpu_suite.py report (no 'environment' and 'rows')")
    env = report["environment"]
    day, added = added_on(path)
    date = date or day
    if date is None:
        raise SystemExit(f"{path}: not in git history; give --date")
    machine = {"platform": env.get("platform"), "python": env.get("python"), "cores": env.get("cpu_count"),
               "load_average_at_start": None, "torch": env.get("torch"), "threads": env.get("torch_threads"),
               "gpu": env.get("gpu"), "gpu_memory_gb": env.get("gpu_memory_gb"), "cuda": env.get("cuda"),
               "cudnn": env.get("cudnn"), "cudnn_benchmark": env.get("cudnn_benchmark")}
    refiner, refiner_results = refiner_table(report["rows"])
    tables, results = {"refiner": refiner.strip() + "\n"}, {"refiner": refiner_results}
    if (sam := sam_table(report["rows"])) is not None:
        tables["sam"], results["sam"] = sam[0].strip() + "\n", sam[1]
    ort = {r["provider_used"]: r["ms"] for r in report["rows"] if r.get("group") == "ort" and "ms" in r}
    if ort:  # the refiner through ONNX Runtime, batch 1, by execution provider
        results["ort_refiner_ms"] = ort
    how = (f"Provenance added by benchmarks/gpu_suite_provenance.py from the report's own 'environment' key; "
           f"gpu_suite.py records no command, date or commit: the command is the documented one, the date "
           f"{'given' if date != day else f'that of commit {added}, which added this file'}, and the commit "
           f"{'given' if commit else 'not recorded'}.")
    report.update({"script": "benchmarks/gpu_suite.py", "command": command, "date": date, "machine": machine,
                   "commit": commit, "dirty": None, "provenance_notes": how, "results": results, "tables": tables})
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="a gpu_suite.py JSON report, rewritten in place")
    ap.add_argument("--command", required=True, help="the command that produced it")
    ap.add_argument("--date", help="when it was measured (default: the day of the commit that added the file)")
    ap.add_argument("--commit", help="the commit it was measured at (default: not recorded)")
    args = ap.parse_args(argv)
    report = convert(Path(args.report), args.command, args.date, args.commit)
    for table in report["tables"].values():
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
