"""Homework handouts for a class: `hgmviz homework --class N -o DIR`."""
import os
from html import escape

import html5lib
import markdown_it
import pytest

from hgmviz.cli import main as cli
from hgmviz.handout import (_md, class_problems, handout_files, handout_markdown, key_markdown,
                            write_handouts)
from hgmviz.teach import homework

pytestmark = pytest.mark.nojit


def test_class_seeds_follow_the_first_one():
    probs = class_problems(3, first=40)
    assert [p.seed for p in probs] == [40, 41, 42]
    assert probs[1] == homework(41)                 # the one-problem command's problem


def test_files_written_and_reproducible(tmp_path):
    paths = write_handouts(tmp_path / "a", 12, first=7)
    names = sorted(os.listdir(tmp_path / "a"))
    assert names == sorted(["student-%02d.%s" % (k, e) for k in range(1, 13) for e in ("md", "html")]
                           + ["key.md", "key.html", "students.html"])
    assert len(paths) == len(names)
    write_handouts(tmp_path / "b", 12, first=7)
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    # a file that was there already is left alone
    (tmp_path / "a" / "notes.txt").write_text("mine")
    write_handouts(tmp_path / "a", 2, first=7, formats=("md",))
    assert (tmp_path / "a" / "notes.txt").read_text() == "mine"


def test_student_handouts_hide_the_answers_and_the_key_has_them_with_reasons():
    probs = class_problems(4, first=100)
    files = handout_files(probs)
    for k, p in enumerate(probs, 1):
        md = files["student-%02d.md" % k]
        assert "seed %d" % p.seed in md and "student %d of 4" % k in md
        assert "Why" not in md and "**Answer:**" not in md
        assert md.count("Answer: ____") == len(p.questions)
        page = files["student-%02d.html" % k]
        assert "Why" not in page and page.count('class="blank"') == len(p.questions)
    for p in probs:
        for q in p.questions:
            assert q.why
            assert "**Answer:** %s\n\n   *Why:* %s" % (_md(q.answer), _md(q.why)) in files["key.md"]
            assert ('<div class="answer">Answer: %s</div><div class="why">Why: %s</div>'
                    % (escape(q.answer, False), escape(q.why, False))) in files["key.html"]


def test_markdown_renders_as_written():
    probs = class_problems(2, first=3)
    md = markdown_it.MarkdownIt("commonmark")
    html = md.render(key_markdown(probs))
    # the steps and the questions are two lists, each numbered from 1
    assert html.count("<ol>") == 4 and "<ol start" not in html
    # kernel names keep their underscores (nothing turned into emphasis)
    assert "__filemap_add_folio()" in html and "_mapcount" in html
    assert html.count("<em>") == html.count("<em>Why:</em>") + html.count("<em>k</em>")
    student = md.render(handout_markdown(probs[0], 1, 2))
    assert student.count("<ol>") == 2 and "<em>" not in student


def test_html_is_well_formed_and_prints_one_student_a_page():
    files = handout_files(class_problems(3, first=1), formats=("html",))
    assert "key.md" not in files and "student-01.md" not in files
    for name, text in files.items():
        html5lib.HTMLParser(strict=True).parse(text)
    every = files["students.html"]
    assert every.count('<section class="page">') == 3
    assert "break-after: page" in every and "@page { margin: 2cm; }" in every


def test_bad_arguments_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="between 1 and 500"):
        write_handouts(tmp_path / "x", 0)
    with pytest.raises(TypeError, match="class size must be an int"):
        write_handouts(tmp_path / "x", "3")
    with pytest.raises(ValueError, match="formats must be md and/or html"):
        write_handouts(tmp_path / "x", 2, formats=("pdf",))
    assert not (tmp_path / "x").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "class"
    assert cli(["homework", "--class", "3", "-o", str(out), "-s", "20"]) == 0
    assert "wrote 9 files" in capsys.readouterr().out
    assert "seed 22" in (out / "student-03.md").read_text()
    assert cli(["homework", "--class", "2", "-o", str(tmp_path / "m"), "--format", "md"]) == 0
    assert sorted(os.listdir(tmp_path / "m")) == ["key.md", "student-01.md", "student-02.md"]
    assert "seed 1)" in (tmp_path / "m" / "student-01.md").read_text()     # default first seed
    capsys.readouterr()
    assert cli(["homework", "--class", "3"]) == 2
    assert "needs -o DIR" in capsys.readouterr().err
    assert cli(["homework", "-o", str(tmp_path / "y")]) == 2
    assert "give --class N" in capsys.readouterr().err
    assert cli(["homework"]) == 2
    assert "give -s SEED" in capsys.readouterr().err
    assert cli(["homework", "--class", "0", "-o", str(tmp_path / "z")]) == 2
    assert "between 1 and 500" in capsys.readouterr().err
    assert cli(["homework", "--class", "2", "-o", str(tmp_path / "z"), "--format", "pdf"]) == 2
    assert not (tmp_path / "z").exists()
    (tmp_path / "file").write_text("")
    assert cli(["homework", "--class", "2", "-o", str(tmp_path / "file")]) == 5
    assert "cannot write the handouts" in capsys.readouterr().err
