"""The Chinese edition cannot fall out of date: every English message has a current translation.

``tools/translations.py`` extracts the messages of the current English text with Sphinx's
gettext builder (prose pages and the notebooks' Markdown cells) and compares them with the
catalogues ``locales/zh_CN/LC_MESSAGES/*.po``. A message without a translation, with a fuzzy
one (its English changed since it was translated) or a translation of a message that no longer
exists fails the test. After changing English text: ``python tools/translations.py update``,
then translate what it reports (CONTRIBUTING.md, "The Chinese edition").
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tools import translations

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import language_switch  # noqa: E402


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> Path:
    """The messages of the current English text, extracted into a scratch folder."""
    return translations.extract(tmp_path_factory.mktemp("gettext") / "pot", source=ROOT)


def test_every_message_has_a_current_translation(messages):
    result = translations.coverage(messages)
    print(result.summary())  # the coverage, as a number, in the test log (-rA / -s)
    assert result.total > 1000, f"only {result.total} messages extracted: is the TOC read?"
    assert result.complete, (
        f"{result.summary()}\n{result.problems()}\n"
        "run `python tools/translations.py update` and translate the entries it reports"
    )


def test_translations_keep_code_math_role_targets_and_urls():
    problems = translations.lint()
    assert not problems, "\n".join(problems[:30])


def _book_copy(tmp_path: Path) -> Path:
    """The intro page, the book's configuration, extensions and catalogues in a scratch folder,
    with a TOC of that page alone (the extraction is then quick)."""
    copy = tmp_path / "book"
    copy.mkdir()
    shutil.copy(ROOT / "_config.yml", copy / "_config.yml")
    (copy / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n", encoding="utf-8")
    ignore = shutil.ignore_patterns("__pycache__", "*.mo")
    for folder in ("book", "tools", "locales"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=ignore)
    return copy


OLD = "Read it here, or run any chapter yourself — see {doc}`how-to-run`. In short:"
NEW = "Read it online, or run any chapter yourself — see {doc}`how-to-run`. In short:"


def test_a_changed_english_sentence_fails_the_check(tmp_path):
    """Change one sentence of the intro in a copy of the book: the check names it as missing
    and its old translation as obsolete; after ``update`` the old translation is kept but
    marked fuzzy, so the check still fails until a translator confirms or fixes it."""
    from babel.messages.pofile import read_po, write_po

    copy = _book_copy(tmp_path)
    locales = copy / "locales"
    po_path = locales / translations.LANGUAGE / "LC_MESSAGES" / "book" / "intro.po"
    with open(po_path, "rb") as handle:
        catalog = read_po(handle, locale=translations.LANGUAGE)
    assert OLD in catalog, "the sentence this test changes is no longer in book/intro.md"
    catalog[OLD].string = "可以在这里阅读，也可以自己运行任何一章——见 {doc}`how-to-run`。简而言之："
    with open(po_path, "wb") as handle:
        write_po(handle, catalog, width=76)
    intro = copy / "book" / "intro.md"
    text = intro.read_text(encoding="utf-8")
    assert "Read it here," in text
    intro.write_text(text.replace("Read it here,", "Read it online,"), encoding="utf-8")

    pot = translations.extract(tmp_path / "pot", source=copy)
    result = translations.coverage(pot, locales)
    assert not result.complete
    assert ("book/intro", NEW) in result.missing
    assert ("book/intro", OLD) in result.obsolete

    translations.update(pot, locales, source=copy)
    result = translations.coverage(pot, locales)
    assert not result.complete
    assert ("book/intro", NEW) in result.fuzzy
    assert ("book/intro", NEW) not in result.missing
    assert not [entry for entry in result.obsolete if entry[0] == "book/intro"]


@pytest.mark.parametrize(
    ("pagename", "language", "expected"),
    [
        ("book/intro", "en", "../zh/book/intro.html"),
        ("book/intro", "zh_CN", "../../book/intro.html"),
        ("genindex", "en", "zh/genindex.html"),
        ("genindex", "zh_CN", "../genindex.html"),
        ("notebooks/03_2_pruning", "fr", None),
    ],
)
def test_language_switch_href(pagename, language, expected):
    assert language_switch.translation_href(pagename, language) == expected


def test_output_template_slots_values_and_ignores_padding():
    """Two runs of the same printed table, with other times and so other column widths, give
    one template; its translation gets each run's own values back."""
    run_1 = "| arm | time |\n|:----|-----:|\n| int8, 5 seeds | ⏱ 12.3 ms |"
    run_2 = (
        "| arm           | time       |\n|:--------------|-----------:|\n"
        "| int8, 5 seeds | ⏱ 9.87 ms |"
    )
    (template, values_1), (template_2, values_2) = map(
        translations.output_template, (run_1, run_2)
    )
    assert template == template_2 == "| arm | time |\n|:---|---:|\n| int8, ⟦0⟧ seeds | ⏱ ⟦1⟧ ms |"
    assert values_1[-1] == "12.3" and values_2[-1] == "9.87"
    chinese = template.replace("arm", "实验组").replace("seeds", "个随机种子")
    assert "9.87" in translations.translate_output(run_2, {template: chinese})
    assert "实验组" in translations.translate_output(run_2, {template: chinese})


def test_printed_code_and_untranslated_blocks_stay_as_they_are():
    markdown = "Accuracy **0.95** over 5 seeds.\n\n```python\nx = 1\n\ny = 2\n```\n\nNo entry 3."
    blocks = translations.output_blocks(markdown)
    assert [translatable for _, translatable in blocks] == [True, False, True]
    assert "\n\n".join(block for block, _ in blocks) == markdown
    template, _ = translations.output_template(blocks[0][0])
    translated = translations.translate_output(markdown, {template: "⟦1⟧ 个随机种子：**⟦0⟧**。"})
    assert translated == "5 个随机种子：**0.95**。\n\n```python\nx = 1\n\ny = 2\n```\n\nNo entry 3."


def test_lint_requires_every_slot(tmp_path):
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    catalog = Catalog(locale=translations.LANGUAGE)
    catalog.add("Accuracy ⟦0⟧ over ⟦1⟧ seeds.", "准确率 ⟦0⟧。")
    path = tmp_path / "x.po"
    with open(path, "wb") as handle:
        write_po(handle, catalog)
    (problem,) = translations.lint(paths=[path])
    assert "value slots" in problem
