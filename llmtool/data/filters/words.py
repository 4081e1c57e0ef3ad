"""Word tokenisation shared by every quality filter: one pass per document.

FineWeb (datatrove) splits words with spaCy's blank English tokenizer and counts sentences
with spaCy's sentencizer. spaCy is a large dependency and its pipeline is slow to call, so
llmtool re-implements the part that decides word boundaries: split on whitespace, then
spaCy's algorithm (special cases such as "don't" and "Mr.", prefixes and suffixes peeled
off in turn, infixes such as hyphens between letters, URLs kept whole), with the English
rules written as regular expressions over Unicode classes. Chunks made only of letters and
digits, the vast majority, take a fast path. docs/filter.md gives the measured agreement.

    >>> from llmtool.data.filters.words import Doc
    >>> d = Doc("It isn't well-known.\\nSee https://x.org/a, ok?")
    >>> d.words
    ['It', 'is', "n't", 'well', '-', 'known', '.', 'See', 'https://x.org/a', ',', 'ok', '?']
    >>> d.sentences_in_line(0)
    1
"""

from __future__ import annotations

import unicodedata

import regex as re  # \p{M}: stdlib re has no class for combining marks

from llmtool.data.filters.charsets import SENTENCE_END_SET

# ---- the pieces of spaCy's English tokenizer rules that decide where words split ----
_PUNCT = ("…", ",", ":", ";", "!", "?", "¿", "؟", "¡", "(", ")", "[", "]", "{", "}", "<", ">", "_", "#",
          "*", "&", "。", "？", "！", "，", "、", "；", "：", "～", "·", "।", "،", "۔", "؛", "٪")
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉〈〉⟦⟧"
_CURRENCY = r"\$|£|€|¥|฿|US\$|C\$|A\$|₽|﷼|[₠-₿]"
_UNITS = ("km|km²|km³|m|m²|m³|dm|dm²|dm³|cm|cm²|cm³|mm|mm²|mm³|ha|µm|nm|yd|in|ft|kg|g|mg|µg|t|lb|oz|m/s|"
          "km/h|kmh|mph|hPa|Pa|mbar|mb|MB|kb|KB|gb|GB|tb|TB|T|G|M|K|%|км|км²|км³|м|м²|м³|дм|дм²|дм³|см|"
          "см²|см³|мм|мм²|мм³|нм|кг|г|мг|м/с|км/ч|кПа|Па|мбар|Кб|КБ|кб|Мб|МБ|мб|Гб|ГБ|гб|Тб|ТБ|тб")
_ICON = r"\p{So}"  # spaCy lists the "other symbol" ranges: ©, °, arrows, emoji...
_ELLIPSES = (r"\.\.+", "…")
_PUNCT_RE = "|".join(re.escape(p) for p in _PUNCT)
_QUOTE_CLASS = re.escape(_QUOTES)
# spaCy counts letters of scripts without case (CJK, Hangul, Arabic...) as both lower and upper.
_AL, _AU, _A = r"\p{Ll}\p{Lo}", r"\p{Lu}\p{Lo}", r"\p{L}"
_HYPHENS = "-|–|—|--|---|——|~"

_PREFIX = re.compile("^(?:" + "|".join(
    ["§", "%", "=", "—", "–", r"\+(?![0-9])", _PUNCT_RE, *_ELLIPSES, f"[{_QUOTE_CLASS}]", _CURRENCY, _ICON]) + ")")
_SUFFIX = re.compile("|".join(f"(?:{p})$" for p in [
    _PUNCT_RE, *_ELLIPSES, f"[{_QUOTE_CLASS}]", _ICON, "'s", "'S", "’s", "’S", "—", "–",
    r"(?<=[0-9])\+", r"(?<=°[FfCcKk])\.", rf"(?<=[0-9])(?:{_CURRENCY})", rf"(?<=[0-9])(?:{_UNITS})",
    rf"(?<=[0-9{_AL}%²\-\+{_QUOTE_CLASS}]|{_PUNCT_RE})\.", rf"(?<=[{_AU}][{_AU}])\.",
]))
_INFIX = re.compile("|".join([
    *_ELLIPSES, _ICON, r"(?<=[0-9])[+\-\*^](?=[0-9-])", rf"(?<=[{_AL}{_QUOTE_CLASS}])\.(?=[{_AU}{_QUOTE_CLASS}])",
    rf"(?<=[{_A}]),(?=[{_A}])", rf"(?<=[{_A}0-9])(?:{_HYPHENS})(?={_A})", rf"(?<=[{_A}0-9])[:<>=/](?={_A})",
]))
# spaCy's url_match: an optional scheme and user, then an IPv4 address or dotted host names
# ending in a lower-case top-level domain, an optional port and path. Such a word stays whole.
_URL = re.compile(
    r"^(?:[\w+\-.]{2,}://)?(?:[^\s@:]+(?::[^\s@]*)?@)?"  # spaCy: \S+(?::\S*)?@, which backtracks badly
    r"(?:(?:[1-9]\d?|1\d\d|2[01]\d|22[0-3])(?:\.(?:1?\d{1,2}|2[0-4]\d|25[0-5])){2}\.(?:[1-9]\d?|1\d\d|2[0-4]\d|25[0-4])"
    r"|(?:(?:[A-Za-z0-9\u00a1-\uffff][A-Za-z0-9\u00a1-\uffff_-]{0,62})?[A-Za-z0-9\u00a1-\uffff]\.)+"
    r"[\p{Ll}\p{Lo}\p{Lm}\p{M}]{2,63})"
    r"(?::\d{2,5})?(?:[/?#]\S*)?$")


def _load_exceptions() -> dict[str, list[str]]:
    # spaCy's English special cases: "don't" -> "do" "n't", "Mr." stays whole, ":)" too.
    import json
    from importlib.resources import files

    return json.loads((files("llmtool.data.filters") / "lists" / "spacy_en_exceptions.json").read_text())


_SPECIAL = _load_exceptions()


_LONG_CHUNK = 2000
_SIMPLE = re.compile(r"\w+|[^\w\s]")


def _split_word(s: str, out: list[str]) -> None:
    """Split one whitespace-free chunk the way spaCy's tokenizer does: special cases,
    then prefixes and suffixes peeled off in turn, then infixes inside what remains."""
    if len(s) > _LONG_CHUNK:
        # Peeling affixes one at a time is quadratic in the chunk length; a "word" this long
        # (base64, minified code) gets a plain linear split instead. No rule depends on how
        # such a blob is cut, beyond the C4 rule that drops its line (a word over 1000 chars).
        out.extend(_SIMPLE.findall(s))
        return
    prefixes: list[str] = []
    suffixes: list[str] = []
    last = -1
    while s and len(s) != last:
        if s in _SPECIAL:
            break
        last = len(s)
        m = _PREFIX.search(s)
        pre = m.end() if m else 0
        if pre:
            rest = s[pre:]
            if rest and rest in _SPECIAL:
                prefixes.append(s[:pre])
                s = rest
                break
        # Every suffix rule ends at the end of the chunk and is at most a few characters
        # long, so search only the tail (lookbehinds still see the characters before it);
        # a match at the very start of the tail may continue further left: search it all.
        tail = max(pre, len(s) - 6)
        m = _SUFFIX.search(s, tail)
        if m is not None and m.start() == tail and tail > pre:
            m = _SUFFIX.search(s, pre)
        suf = len(s) - m.start() if m else 0
        if suf:
            rest = s[:-suf]
            if rest and rest in _SPECIAL:
                suffixes.append(s[-suf:])
                s = rest
                break
        if pre and suf and pre + suf <= len(s):
            prefixes.append(s[:pre])
            suffixes.append(s[-suf:])
            s = s[pre:-suf]
        elif pre:
            prefixes.append(s[:pre])
            s = s[pre:]
        elif suf:
            suffixes.append(s[-suf:])
            s = s[:-suf]
    start_len = len(out)
    out.extend(prefixes)
    if s:
        special = _SPECIAL.get(s)
        if special is not None:
            out.extend(special)
        elif _URL.match(s):
            out.append(s)
        else:
            start = 0
            for m in _INFIX.finditer(s):
                i, j = m.span()
                if i == 0:  # an infix at the very start is not a split point
                    continue
                if i != start:
                    out.append(s[start:i])
                if i != j:
                    out.append(s[i:j])
                start = j
            if start < len(s):
                out.append(s[start:])
    out.extend(reversed(suffixes))
    if len(out) - start_len > 1:
        _merge_specials(out, start_len)


def _merge_specials(out: list[str], start: int) -> None:
    """spaCy re-joins pieces that together spell a special case (") :" -> "):", "a ." -> "a.")."""
    i = start
    while i < len(out) - 1:
        for n in (3, 2):
            if i + n <= len(out):
                joined = "".join(out[i:i + n])
                special = _SPECIAL.get(joined)
                if special is not None and special != out[i:i + n]:
                    out[i:i + n] = special
                    break
        i += 1


_FAST_SUFFIX = frozenset(',;:!?)".')
# Chunks that need the full rules repeat a lot ("it’s", "well-known", "•"): remember their
# pieces. Splitting depends on the chunk alone, so a cache cannot change a result.
_SPLIT_CACHE: dict[str, tuple[str, ...]] = {}
_SPLIT_CACHE_MAX = 200_000


def _split_cached(s: str, out: list[str]) -> None:
    if len(s) > 64:  # long chunks rarely repeat
        _split_word(s, out)
        return
    pieces = _SPLIT_CACHE.get(s)
    if pieces is None:
        new: list[str] = []
        _split_word(s, new)
        pieces = tuple(new)
        if len(_SPLIT_CACHE) >= _SPLIT_CACHE_MAX:
            _SPLIT_CACHE.clear()
        _SPLIT_CACHE[s] = pieces
    out.extend(pieces)


def tokenize(text: str) -> list[str]:
    """Words of a text, split like spaCy's blank English tokenizer (no whitespace tokens)."""
    out: list[str] = []
    special = _SPECIAL
    for s in text.split():
        # Most chunks are plain words or numbers: no rule splits them (letters after digits
        # can be a unit, "10km", so mixed chunks take the slow path).
        if (s.isalpha() or s.isdigit()) and s not in special:
            out.append(s)
        elif s[-1] in _FAST_SUFFIX and s[:-1].isalpha() and (s[-1] != "." or s[-2].islower()) \
                and s not in special and s[:-1] not in special:
            # "word," "word." (after a lower-case letter the period always splits)
            out.append(s[:-1])
            out.append(s[-1])
        else:
            _split_cached(s, out)
    return out


def _is_punct(token: str) -> bool:
    """spaCy's `is_punct`: every character is in a Unicode punctuation category."""
    return all(unicodedata.category(c).startswith("P") for c in token)


def count_sentences(tokens: list[str]) -> int:
    """Sentences in a token list the way spaCy's sentencizer splits them.

    A new sentence starts at the first non-punctuation token after a sentence-ending
    token (`.`, `!`, `?`, and their equivalents in other scripts).
    """
    if not tokens:
        return 0
    n, seen_end = 1, False
    for t in tokens:
        if t in SENTENCE_END_SET:
            seen_end = True
        elif seen_end and not _is_punct(t):
            n += 1
            seen_end = False
    return n


class Doc:
    """A document's text with its lines and per-line words, each computed at most once.

    Filters ask for what they need (`words`, `lines`, `line_words(i)`); a filter that
    rewrites the text (C4 drops lines) builds the next Doc with `from_lines`, which keeps
    the already tokenised lines.
    """

    __slots__ = ("text", "_lines", "_line_words", "_words")

    def __init__(self, text: str):
        self.text = text
        self._lines: list[str] | None = None
        self._line_words: list[list[str] | None] | None = None
        self._words: list[str] | None = None

    @classmethod
    def from_lines(cls, lines: list[str], line_words: list[list[str] | None]) -> Doc:
        d = cls("\n".join(lines))
        d._lines = lines
        d._line_words = line_words
        return d

    @property
    def lines(self) -> list[str]:
        """The text split on "\\n" (blank lines kept, like str.split)."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def line_words(self, i: int) -> list[str]:
        if self._line_words is None:
            self._line_words = [None] * len(self.lines)
        w = self._line_words[i]
        if w is None:
            w = self._line_words[i] = tokenize(self.lines[i])
        return w

    def sentences_in_line(self, i: int) -> int:
        return count_sentences(self.line_words(i))

    @property
    def words(self) -> list[str]:
        """All words of the document (tokens never cross a line break)."""
        if self._words is None:
            out: list[str] = []
            for i in range(len(self.lines)):
                out.extend(self.line_words(i))
            self._words = out
        return self._words
