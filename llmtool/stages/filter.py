"""`llmtool filter`: FineWeb's quality pipeline, offline, with a reason for every drop.

    llmtool fetch crawl.warc.gz | llmtool filter - -o clean.parquet
    llmtool filter pages.parquet --rejected dropped.parquet --explain
    llmtool filter docs.jsonl.gz --skip url,lid --set gopher_quality.min_doc_words=30
    llmtool filter pages.parquet --extractor resiliparse --workers 8 --shard 0/4

Order (docs/design.md §4): url -> extract -> lid -> gopher_rep -> gopher_quality -> c4 -> fineweb -> pii.
The work lives in llmtool.data.extract and llmtool.data.filters.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtool.io.run import Opts
from llmtool.stages.common import (
    ForceOpt,
    JsonOpt,
    OutputOpt,
    QuietOpt,
    ShardOpt,
    VerboseOpt,
    WorkersOpt,
)

STAGE_VERSION = 2  # 2: the language pre-screen also runs before resiliparse
NO_ARGS_HELP = True
STEP_NAMES = "url, extract, lid, gopher_rep, gopher_quality, c4, fineweb, pii"


def _steps(value: str | None, option: str) -> set[str]:
    from llmtool.data.filters.pipeline import STEPS
    from llmtool.errors import UsageError

    names = {s.strip() for s in (value or "").split(",") if s.strip()}
    unknown = sorted(names - set(STEPS))
    if unknown:
        raise UsageError(f"{option}: unknown step(s) {', '.join(unknown)}; steps are: {STEP_NAMES}")
    return names


def run(
    inputs: Annotated[list[str], typer.Argument(
        help="Document tables (Parquet, Arrow stream, JSONL(.gz)) with a 'text' column, or - for stdin.")],
    output: OutputOpt = None,
    rejected: Annotated[Optional[str], typer.Option(
        "--rejected", help="Also write every dropped row here, with a 'reason' column (step:rule).")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add each document's filter metrics as columns.")] = False,
    skip: Annotated[Optional[str], typer.Option(
        "--skip", help=f"Steps to leave out, comma-separated: {STEP_NAMES}.")] = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", help="Run only these steps (comma-separated), e.g. --only c4.")] = None,
    extractor: Annotated[str, typer.Option(
        "--extractor", help="HTML extraction: trafilatura (FineWeb's, precise) or resiliparse (fast).")] = "trafilatura",
    extract_timeout: Annotated[float, typer.Option(
        "--extract-timeout", min=0.0,
        help="CPU seconds allowed per page for extraction (0 = no limit); slower pages are dropped as "
        "extract:timeout and counted.")] = 10.0,
    url_blocklist: Annotated[Optional[list[str]], typer.Option(
        "--url-blocklist", help="UT1-format block list: a 'domains'/'urls' file, a folder of them, or a "
        "tar.gz (repeatable). Without one, only the banned-word rules run on URLs.")] = None,
    lang: Annotated[str, typer.Option(
        "--lang", help="Languages to keep (comma-separated lid.176 codes), or 'all' for any language.")] = "en",
    prescreen: Annotated[bool, typer.Option(
        "--prescreen/--no-prescreen", help="Skip extraction on pages whose sampled text is clearly in "
        "another language than --lang (much faster on multilingual crawls; see docs/filter.md).")] = True,
    lang_threshold: Annotated[float, typer.Option(
        "--lang-threshold", min=0.0, max=1.0, help="Keep documents whose score for --lang is above this.")] = 0.65,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Change a threshold: GROUP.NAME=VALUE (repeatable; 'off' disables a rule), e.g. "
        "gopher_quality.min_doc_words=30, c4.terminal_punct=on, gopher_rep.top_ngrams=2:0.2,3:0.18. "
        "See docs/filter.md for every name.")] = None,
    workers: WorkersOpt = None,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json_summary: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Clean web documents the way FineWeb was made, and say why each one was dropped.

    Steps, in order: URL block lists and banned words; HTML extraction
    (trafilatura, or resiliparse as a fast mode); language ID (fastText
    lid.176, offline); Gopher repetition; Gopher quality; C4 (terminal
    punctuation off); FineWeb's rules; e-mail and public IPv4 anonymisation.
    Thresholds default to datatrove's FineWeb values. Output: the kept rows
    with the cleaned text, plus language and language_score.

    Examples:

      llmtool fetch crawl.warc.gz | llmtool filter - -o clean.parquet

      llmtool filter pages.parquet --rejected dropped.parquet --explain

      llmtool filter docs.jsonl --set gopher_quality.min_doc_words=30

      llmtool filter pages.parquet --extractor resiliparse --shard 0/4
    """
    import os
    from collections import Counter

    from llmtool.data.filters.driver import Runner, filter_batches, output_schema
    from llmtool.data.filters.pipeline import Pipeline
    from llmtool.errors import UsageError
    from llmtool.io.console import Progress, log
    from llmtool.io.pool import default_workers
    from llmtool.io.run import StageRun, parse_shard
    from llmtool.io.tables import TableWriter, expand_inputs, open_table

    # plan: every usage error before any work
    settings, (domains, urls), blocklist_keys = _plan(skip, only, extractor, extract_timeout, url_blocklist,
                                                      lang, lang_threshold, set_ or [])
    settings.lid_prescreen = prescreen
    files = expand_inputs(inputs, patterns=("*.parquet", "*.arrow", "*.jsonl", "*.jsonl.gz"))
    shard_i, shard_n = parse_shard(shard)
    params = {"settings": settings.describe(), "blocklists": blocklist_keys, "explain": explain,
              "rejected": rejected, "shard": [shard_i, shard_n]}
    run_ = StageRun("filter", STAGE_VERSION, params, files, output,
                    Opts(force=force, json=json_summary, quiet=quiet, verbose=verbose))
    if rejected is not None and rejected in ("-", run_.output):
        raise UsageError("--rejected needs its own file (not - and not the output)")
    if rejected is not None:
        run_.claim(rejected, "--rejected")
    # a missing --rejected file means the run must be redone, even if the output is current
    if (rejected is None or os.path.exists(rejected)) and run_.up_to_date():
        return

    # stream: input batches -> pipeline (in a process pool) -> kept / rejected writers
    pipeline = Pipeline(settings, domains, urls, explain=explain)
    no_lists = "url" not in settings.skip and not (domains or urls)
    if no_lists:
        log("url: no --url-blocklist given, so only the banned-word rules check URLs")
    first = open_table(files[0])
    seen_total = kept_total = row = 0
    reasons: Counter = Counter()
    with TableWriter(run_.output, run_.provenance, schema=output_schema(first.schema, explain)) as writer, \
            _maybe_writer(rejected, run_.provenance, output_schema(first.schema, explain, rejected=True)) as rej, \
            Runner(pipeline, default_workers(workers)) as runner, \
            Progress("filter", total=first.num_rows if len(files) == 1 else None) as bar:
        for k, f in enumerate(files):
            table = first if k == 0 else open_table(f)
            row, seen, kept, why = filter_batches(table.batches(), table.schema, runner, writer, rej, explain,
                                                  (shard_i, shard_n), row, progress=bar.advance)
            seen_total += seen
            kept_total += kept
            reasons.update(why)

    # summary
    by_step = Counter(r.split(":", 1)[0] for r in reasons.elements())
    fields = {"docs_in": seen_total, "docs_out": kept_total,
              "kept_frac": round(kept_total / seen_total, 4) if seen_total else 0.0,
              "dropped_by_step": dict(by_step.most_common()),
              "dropped": dict(reasons.most_common())}
    if no_lists:
        fields["url_lists"] = "none (banned-word rules only)"
    if rejected:
        fields["rejected"] = rejected
    run_.summary(**fields)


def _maybe_writer(path, provenance, schema):
    import contextlib

    if path is None:
        return contextlib.nullcontext(None)
    from llmtool.io.tables import TableWriter

    return TableWriter(path, provenance, schema=schema)


def _plan(skip, only, extractor, extract_timeout, url_blocklist, lang, lang_threshold, assignments):
    """Settings from the options (usage errors here, before any work)."""
    from llmtool.data.extract import EXTRACTORS
    from llmtool.data.filters.pipeline import STEPS, Settings, apply_settings
    from llmtool.errors import UsageError

    skipped = _steps(skip, "--skip")
    if only:
        if skip:
            raise UsageError("--only and --skip together: use one of them")
        skipped = set(STEPS) - _steps(only, "--only")
    if extractor not in EXTRACTORS:
        raise UsageError(f"--extractor {extractor!r}: choose trafilatura or resiliparse")
    languages = None if lang.strip().lower() in ("all", "any", "*") else \
        [x.strip() for x in lang.split(",") if x.strip()]
    if languages is not None and not languages:
        raise UsageError("--lang: give at least one language code, or 'all'")
    if languages is not None and "lid" not in skipped:
        from llmtool.data.filters.lid import LanguageId

        # The model's own labels (threshold -1 lists all 176): `--lang english` would keep nothing.
        labels, _ = LanguageId().model.predict("", k=-1, threshold=-1.0)
        unknown = [x for x in languages if f"__label__{x}" not in labels]
        if unknown:
            raise UsageError(f"--lang: not a lid.176 language code: {', '.join(map(repr, unknown))} "
                             "(use codes such as en, de, fr, zh, or 'all')")
    settings = Settings(skip=skipped, extractor=extractor, extract_cpu_budget=extract_timeout,
                        languages=languages, lang_threshold=lang_threshold)
    try:
        apply_settings(settings, assignments)
    except ValueError as e:
        raise UsageError(str(e))
    domains: set[str] = set()
    urls: set[str] = set()
    keys = []
    if url_blocklist and "url" not in skipped:
        from llmtool.data.filters.url import load_blocklists
        from llmtool.io.provenance import input_record

        domains, urls = load_blocklists(list(url_blocklist))
        keys = [input_record(p)["key"] for p in url_blocklist]
    return settings, (domains, urls), keys
