"""Every citation of the design in the code points into docs/DESIGN.md: the
section exists, and a cited step of section 4 or 6 is one of its numbered
steps. The code may cite the design by path only."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
CITATION = re.compile(r"(?<![\w/])(docs/)?DESIGN\.md,? (sections?|§)? ?(?P<sections>\d+(?:(?:, | and |-)\d+)*)(?:, steps? (?P<step>\d+))?")


def sections_and_steps() -> dict[int, set[int]]:
    """Top-level section number -> the numbered steps written in it."""
    found: dict[int, set[int]] = {}
    current = None
    for line in DESIGN.read_text().splitlines():
        heading = re.match(r"## (\d+)\. ", line)
        if heading:
            current = int(heading.group(1))
            found[current] = set()
        elif current is not None and (step := re.match(r"(\d+)\. \*\*", line)):
            found[current].add(int(step.group(1)))
    return found


def citations() -> list[tuple[str, re.Match]]:
    return [
        (f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}", match)
        for path in sorted(ROOT.rglob("*.py"))
        if ".git" not in path.parts
        for text in [path.read_text()]
        for match in CITATION.finditer(text)
    ]


def cited_sections(match: re.Match) -> list[int]:
    numbers = [int(n) for n in re.findall(r"\d+", match.group("sections"))]
    if "-" in match.group("sections"):
        return list(range(numbers[0], numbers[-1] + 1))
    return numbers


def test_the_code_cites_the_design_by_its_path_in_the_repo():
    assert [place for place, match in citations() if not match.group(1)] == []


def test_every_cited_section_and_step_exists():
    design = sections_and_steps()
    missing = []
    for place, match in citations():
        for section in cited_sections(match):
            if section not in design:
                missing.append(f"{place}: section {section}")
            elif match.group("step") and int(match.group("step")) not in design[section]:
                missing.append(f"{place}: section {section}, step {match.group('step')}")
    assert missing == []
    assert len(citations()) > 50  # the pattern still finds the citations


def test_the_design_has_the_sections_the_code_relies_on():
    assert set(sections_and_steps()) >= set(range(1, 13))
    assert sections_and_steps()[4] >= {4, 5, 6}
