"""`llmtool dedup`: remove exact and near-duplicate documents (and repeated lines).

    llmtool dedup docs.parquet                                  # -> docs.dedup.parquet
    llmtool dedup shards/*.parquet -o clean.parquet --keep longest --clusters clusters.parquet
    llmtool dedup shards/ --out-dir clean/                      # one output per input
    llmtool filter crawl.parquet -o - | llmtool dedup - -o clean.parquet
    llmtool dedup pages/ --lines --out-dir clean/               # C4-style line dedup only

    # on a cluster: signatures in parallel (one job per shard), then one merge step
    for i in 0 1 2 3; do llmtool dedup shards/ --shard $i/4 --signatures sigs/ & done; wait
    llmtool dedup shards/ --signatures sigs/ -o clean.parquet

The work lives in llmtool/data/dedup (see docs/dedup.md).
"""

from __future__ import annotations

from typing import Annotated

import typer

from llmtool.errors import UsageError
from llmtool.stages.common import (
    ForceOpt,
    JsonOpt,
    OutputOpt,
    QuietOpt,
    ShardOpt,
    VerboseOpt,
    WorkersOpt,
)

NO_ARGS_HELP = True
VERSION = 1
FOLDER_PATTERNS = ("*.parquet", "*.arrow", "*.jsonl", "*.jsonl.gz", "*.txt")
# (bands, rows, verify Jaccard). 5% of words changed leaves a 5-gram Jaccard of about 0.63,
# which 14 x 8 catches a third of the time; 37 x 3 catches it, and the check on the true
# Jaccard keeps the extra candidates that this looser banding finds from merging.
PRESETS = {"fineweb": (14, 8, None), "recall": (37, 3, 0.45)}


def run(
    inputs: Annotated[list[str], typer.Argument(help="Document tables (Parquet, Arrow stream, JSONL, text), "
                                                "folders or globs; - for stdin. Deduplicated jointly.")],
    output: OutputOpt = None,
    out_dir: Annotated[str | None, typer.Option("--out-dir", help="Write one output per input into this "
                                                   "folder (same base name, .parquet).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="exact | minhash | both | none "
                                                "(default both; none with --lines).")] = None,
    keep: Annotated[str, typer.Option("--keep", help="Survivor of a cluster: first (input order) or "
                                      "longest (first among equals).")] = "first",
    clusters: Annotated[str | None, typer.Option("--clusters", help="Also write (id, source, row, "
                                                    "cluster_id, cluster_size, kept, reason) for every "
                                                    "document to this Parquet file.")] = None,
    verify_jaccard: Annotated[float | None, typer.Option("--verify-jaccard", min=0.0, max=1.0,
                                                            help="Merge a candidate pair only if its true "
                                                            "shingle Jaccard is >= T.")] = None,
    lines: Annotated[bool, typer.Option("--lines", help="Remove lines that occur more than once in the "
                                        "whole collection (C4-style), then documents left too short.")] = False,
    line_unit: Annotated[str, typer.Option("--line-unit", help="line | paragraph (blank-line separated).")] = "line",
    min_length: Annotated[int, typer.Option("--min-length", min=0, help="--lines: drop documents with fewer "
                                            "characters than this left (0 keeps empty ones).")] = 1,
    ngram: Annotated[int, typer.Option("--ngram", min=1, help="Words per shingle.")] = 5,
    preset: Annotated[str, typer.Option("--preset", help="fineweb: 14 bands x 8 rows (pairs above "
                                        "Jaccard ~0.75); recall: 37 x 3 with --verify-jaccard 0.45 (also "
                                        "catches copies with ~5% of words changed). --bands/--rows/"
                                        "--verify-jaccard override it.")] = "fineweb",
    bands: Annotated[int | None, typer.Option("--bands", min=1, help="LSH bands (default from --preset).")] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=1, help="Hashes per band (default from --preset).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the hash functions.")] = 1,
    signatures: Annotated[str | None, typer.Option("--signatures", help="Folder of signature files: "
                                                      "--shard writes them, a run without --shard reuses "
                                                      "them (computing any missing).")] = None,
    shard: ShardOpt = None,
    tmp_dir: Annotated[str | None, typer.Option("--tmp-dir", help="Where spill files go (default: "
                                                   "$TMPDIR); removed on exit.")] = None,
    workers: WorkersOpt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Remove duplicate documents: exact (normalised text hash) and near (MinHash LSH, FineWeb's
    5-gram shingles, 14 bands x 8 rows), deterministically, with bounded memory.

    Examples:

      llmtool dedup docs.parquet --clusters clusters.parquet

      llmtool dedup shards/ --out-dir clean/ --keep longest

      llmtool dedup pages/ --lines --out-dir clean/

      llmtool dedup shards/ --shard 0/4 --signatures sigs/   (then: llmtool dedup shards/ --signatures sigs/ -o clean.parquet)
    """
    import shutil

    from llmtool.io.console import debug, log, set_logging
    from llmtool.io.pool import default_workers
    from llmtool.io.run import Opts, StageRun, parse_shard
    from llmtool.io.tables import expand_inputs

    set_logging("dedup", quiet, verbose)
    if preset not in PRESETS:
        raise UsageError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    p_bands, p_rows, p_verify = PRESETS[preset]
    bands = bands if bands is not None else p_bands
    rows = rows if rows is not None else p_rows
    if verify_jaccard is None and mode in (None, "minhash", "both") and not lines:
        verify_jaccard = p_verify
    opts = Opts(force=force, json=json_out, quiet=quiet, verbose=verbose)
    if mode is None:
        mode = "none" if lines else "both"
    for name, value, allowed in (("--mode", mode, ("exact", "minhash", "both", "none")),
                                 ("--keep", keep, ("first", "longest")),
                                 ("--line-unit", line_unit, ("line", "paragraph"))):
        if value not in allowed:
            raise UsageError(f"{name} {value!r}: choose one of {', '.join(allowed)}")
    if mode == "none" and not lines:
        raise UsageError("--mode none does nothing without --lines")
    if bands * rows > 4096:
        raise UsageError(f"--bands {bands} x --rows {rows} = {bands * rows} hash functions: too many (max 4096)")
    if verify_jaccard is not None and mode not in ("minhash", "both"):
        raise UsageError("--verify-jaccard checks MinHash candidates: use --mode minhash or both")
    if output is not None and out_dir is not None:
        raise UsageError("give either -o OUTPUT or --out-dir DIR, not both")
    if signatures is not None and lines:
        raise UsageError("--signatures cannot be combined with --lines (signatures depend on the "
                         "collection-wide duplicate lines)")
    shard_i, shard_n = parse_shard(shard)
    files = expand_inputs(inputs, FOLDER_PATTERNS)
    if files.count("-") > 1:
        raise UsageError("stdin (-) can be read only once")

    from llmtool.data.dedup.pipeline import Dedup, Plan
    from llmtool.data.dedup.signatures import Settings

    settings = Settings(mode=mode, ngram=ngram, num_perm=bands * rows, bands=bands, rows=rows, seed=seed)
    params = {"mode": mode, "ngram": ngram, "bands": bands, "rows": rows, "seed": seed, "keep": keep,
              "lines": lines, "line_unit": line_unit if lines else None,
              "min_length": min_length if lines else None, "verify_jaccard": verify_jaccard}
    n_workers = default_workers(workers)

    if shard is not None:
        return _signature_shard(files, settings, params, signatures, shard_i, shard_n, lines, output,
                                out_dir, clusters, n_workers, opts)

    outputs = _outputs(files, out_dir)
    run = StageRun("dedup", VERSION, params, files, outputs[0] if outputs else output, opts)
    if outputs is None:
        outputs = [run.output]
    if clusters is not None and clusters in outputs:
        raise UsageError(f"--clusters {clusters} is also the output: name another file")
    for extra in outputs[1:]:
        run.claim(extra, "--out-dir")
    if clusters is not None:
        run.claim(clusters, "--clusters")
    if _up_to_date(run, outputs, clusters):
        return

    from llmtool.io.atomic import scratch_dir

    workdir = str(scratch_dir("dedup", tmp_dir))  # named for its pid: a SIGKILLed run's is removed later
    try:
        paths, names = _prepare_inputs(files, workdir, single_output=len(outputs) == 1)
        plan = Plan(inputs=paths, settings=settings, keep=keep, lines=lines, unit=line_unit,
                    min_length=min_length, verify=verify_jaccard, workers=n_workers, names=names)
        keys = [rec.get("key") if f != "-" else None for f, rec in zip(files, run.provenance["inputs"], strict=False)]
        if signatures is not None:
            from llmtool.io.run import ensure_folder

            ensure_folder(signatures, "--signatures")
        import time

        from llmtool.io.console import Progress

        t0 = time.perf_counter()
        with Progress("signatures") as bar:
            d = Dedup(plan, workdir, sigdir=signatures, input_keys=keys, progress=bar.advance)
            d.signatures()
        if d.reused:
            log(f"reused the signatures of {d.reused} of {len(files)} inputs from {signatures}")
        t1 = time.perf_counter()
        dec = d.decide()
        t2 = time.perf_counter()
        d.write(outputs, run.provenance, clusters=clusters)
        debug(f"inputs {t0 - run.t0:.2f}s, signatures {t1 - t0:.2f}s, decide {t2 - t1:.2f}s, "
              f"write {time.perf_counter() - t2:.2f}s ({n_workers} workers)")
        stats = dict(dec.stats)
        if getattr(d, "verify_rejected", None) is not None:
            stats["verify_rejected"] = d.verify_rejected
        if out_dir is not None:
            stats["outputs"] = len(outputs)
        run.summary(**stats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _outputs(files: list[str], out_dir: str | None) -> list[str] | None:
    """One path per input under --out-dir (same base name), or None for a single output."""
    import os
    from pathlib import Path

    from llmtool.errors import UsageError
    from llmtool.io.run import strip_suffix

    if out_dir is None:
        return None
    from llmtool.io.run import ensure_folder

    ensure_folder(out_dir, "--out-dir")  # a file there, or no write access: one line, exit 2
    outs, seen = [], {}
    for f in files:
        base = "stdin" if f == "-" else strip_suffix(Path(f).name)
        dest = os.path.join(out_dir, base + ".parquet")
        if dest in seen:
            raise UsageError(f"--out-dir: {f} and {seen[dest]} would both write {dest} (rename one)")
        if f != "-" and os.path.abspath(dest) == os.path.abspath(f):
            raise UsageError(f"--out-dir: {dest} would overwrite its own input")
        seen[dest] = f
        outs.append(dest)
    return outs


def _up_to_date(run, outputs: list[str], clusters: str | None) -> bool:
    """StageRun.up_to_date, extended to every --out-dir output and the clusters file."""
    import os

    from llmtool.io.provenance import read_provenance

    if len(outputs) == 1 and clusters is None:
        return run.up_to_date()
    if run.opts.force or run.key is None:
        return False
    for path in outputs + ([clusters] if clusters else []):
        if path == "-" or not os.path.exists(path):
            return False
        old = read_provenance(path)
        if not old or old.get("key") != run.key:
            return False
    return run.up_to_date() if outputs[0] != "-" else False


def _prepare_inputs(files: list[str], workdir: str, single_output: bool) -> tuple[list[str], list[str]]:
    """(paths to read, display names), after checking every input's schema.

    dedup reads its inputs up to three times (signatures, optional --verify-jaccard,
    output), so anything but Parquet (stdin, Arrow streams, JSONL, text, which must be
    parsed whole each time) is converted once to a Parquet file in the work folder.
    Inputs merged into one output must share a schema: checked here, before any work.
    """
    import os

    from llmtool.data.dedup.pipeline import check_text_type
    from llmtool.errors import BadInputError
    from llmtool.io.tables import TableWriter, open_table

    paths, names, first = [], [], None
    for k, f in enumerate(files):
        name = "stdin" if f == "-" else f
        table = open_table(f)
        check_text_type(name, table.schema)
        if f != "-" and _is_parquet(f):
            paths.append(f)
        else:
            dest = os.path.join(workdir, f"input-{k:06d}.parquet")
            with TableWriter(dest, None, schema=table.schema) as w:
                for batch in table.batches():
                    w.write(batch)
            paths.append(dest)
        names.append(name)
        plain = table.schema.remove_metadata()
        if not single_output:
            continue
        if first is None:
            first = (name, plain)
        elif plain != first[1]:
            a = dict(zip(first[1].names, map(str, first[1].types), strict=True))
            b = dict(zip(plain.names, map(str, plain.types), strict=True))
            diff = sorted({c for c in a.keys() | b.keys() if a.get(c) != b.get(c)})
            detail = ", ".join(f"{c}: {a.get(c, 'absent')} vs {b.get(c, 'absent')}" for c in diff[:5])
            raise BadInputError(f"{name}: columns differ from {first[0]} ({detail}); inputs written to one "
                                "output must share a schema (or use --out-dir for one output per input)")
    return paths, names


def _is_parquet(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _signature_shard(files, settings, params, signatures, shard_i, shard_n, lines, output, out_dir,
                     clusters, n_workers, opts) -> None:
    """--shard I/N: compute the signatures of inputs I, I+N, I+2N, ... into --signatures DIR."""
    import time

    from llmtool.data.dedup.pipeline import Dedup, Plan
    from llmtool.errors import UsageError
    from llmtool.io import provenance as prov
    from llmtool.io.console import Progress, log

    if signatures is None:
        raise UsageError("--shard computes signatures only: give --signatures DIR (then merge with a run "
                         "without --shard)")
    if lines:
        raise UsageError("--shard cannot be combined with --lines (line counts are collection-wide)")
    if output is not None or out_dir is not None or clusters is not None:
        raise UsageError("--shard writes only signatures: drop -o/--out-dir/--clusters (they belong to the merge run)")
    if "-" in files:
        raise UsageError("--shard needs named input files (stdin cannot be split across jobs)")
    t0 = time.perf_counter()
    from llmtool.io.run import ensure_folder

    ensure_folder(signatures, "--signatures")
    mine = [k for k in range(len(files)) if k % shard_n == shard_i]
    # an input's key hashes its content: compute only this shard's
    keys = [prov.input_record(f)["key"] if k in mine else None for k, f in enumerate(files)]
    plan = Plan(inputs=files, settings=settings, workers=n_workers)
    with Progress(f"signatures {shard_i}/{shard_n}") as bar:
        docs = [0]

        def advance(n):
            docs[0] += n
            bar.advance(n)

        d = Dedup(plan, signatures, sigdir=signatures, input_keys=keys, progress=advance)
        d.signatures(mine)
    seconds = time.perf_counter() - t0
    summary = {"stage": "dedup", "shard": f"{shard_i}/{shard_n}", "inputs": len(mine), "reused": d.reused,
               "docs": docs[0], "signatures": signatures, "seconds": round(seconds, 3)}
    if opts.json:
        import json

        print(json.dumps(summary))
    else:
        log(f"shard {shard_i}/{shard_n}: signatures of {len(mine)} inputs ({docs[0]} docs computed, "
            f"{d.reused} reused) -> {signatures} ({seconds:.1f}s)")
