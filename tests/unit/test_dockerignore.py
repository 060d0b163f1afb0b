"""Unit tests for immutdock.identity.dockerignore: reading ignore files and moby's pattern rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from immutdock.identity.dockerignore import (
                                             IgnoreMatcher,
                                             _translate,
                                             go_clean,
                                             parse_ignore_file,
                                             read_ignore_patterns,
                                             )

# --------------------------------------------------------------------------- parsing


def test_parse_skips_comments_and_blank_lines() -> None:
    text = "# a comment\n\nnode_modules\n   \n#another\n*.log\n"
    assert parse_ignore_file(text) == ["node_modules", "*.log"]


def test_parse_only_column_zero_hash_is_a_comment() -> None:
    # ignorefile.ReadAll checks for "#" before trimming: an indented "#" is a pattern.
    assert parse_ignore_file("  # not a comment\n") == ["# not a comment"]


def test_parse_trims_whitespace_and_crlf() -> None:
    assert parse_ignore_file(b"  build  \r\n\tdist\t\r\n") == ["build", "dist"]


def test_parse_strips_utf8_bom() -> None:
    assert parse_ignore_file(b"\xef\xbb\xbfsecret\n") == ["secret"]


def test_parse_removes_leading_slash_and_cleans() -> None:
    text = "/build\n/a/../b/\n./c//d/.\n!/keep\n! spaced\n/\n"
    assert parse_ignore_file(text) == ["build", "b", "c/d", "!keep", "!spaced", "/"]


def test_parse_keeps_a_lone_exclamation_mark() -> None:
    assert parse_ignore_file("!\n") == ["!"]


@pytest.mark.parametrize(("path", "cleaned"), [
    ("", "."), (".", "."), ("a/b/", "a/b"), ("a//b", "a/b"), ("a/./b", "a/b"),
    ("a/../b", "b"), ("../a", "../a"), ("a/../../b", "../b"), ("/../a", "/a"),
    ("//a", "/a"), ("/", "/"), ("**/", "**"),
])
def test_go_clean_matches_go_filepath_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


# --------------------------------------------------------------------------- which ignore file


def test_no_ignore_file_means_no_patterns(tmp_path: Path) -> None:
    assert read_ignore_patterns(tmp_path, tmp_path / "Dockerfile") == []


def test_context_dockerignore_is_read(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("*.log\n")
    assert read_ignore_patterns(tmp_path, tmp_path / "Dockerfile") == ["*.log"]


def test_dockerfile_specific_ignore_file_takes_precedence(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("from-context\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("from-dockerfile\n")
    assert read_ignore_patterns(tmp_path, tmp_path / "Dockerfile") == ["from-dockerfile"]


def test_dockerfile_specific_ignore_file_sits_next_to_the_dockerfile(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("from-context\n")
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "api.Dockerfile.dockerignore").write_text("from-api\n")
    (tmp_path / "api.Dockerfile.dockerignore").write_text("wrong-place\n")
    assert read_ignore_patterns(tmp_path, docker / "api.Dockerfile") == ["from-api"]
    # another Dockerfile in the same directory falls back to the context's file
    assert read_ignore_patterns(tmp_path, docker / "web.Dockerfile") == ["from-context"]


# --------------------------------------------------------------------------- moby's own tables

# patternmatcher_test.go TestMatches (single pattern): (pattern, path, matches or parent matches).
# The two cases whose text is "/" are left out: "/" is not a context-relative path.
MOBY_SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "dir/file", True), ("**/", "dir/file", True), ("**", "dir/file/", True),
    ("**/", "dir/file/", True), ("**/**", "dir/file", True), ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True), ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True), ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True), ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True), ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True), ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True), ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True), ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False),
    ("abc.def", "abcdef", False), ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True), ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False), ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
]

# patternmatcher_test.go matchTests (Go's filepath.Match table run through Matches).
MOBY_GLOB = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True),
    ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False), ("*x", "xxx", True),
]

MOBY_BAD = ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "!",
            "[Local-Only]/"]

MOBY_MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MOBY_SINGLE + MOBY_GLOB)
def test_moby_single_pattern_cases(pattern: str, path: str, expected: bool) -> None:
    assert IgnoreMatcher([pattern]).ignored(path) is expected


@pytest.mark.parametrize(("patterns", "path", "expected"), MOBY_MULTI)
def test_moby_multi_pattern_cases(patterns: list[str], path: str, expected: bool) -> None:
    assert IgnoreMatcher(patterns).ignored(path) is expected


@pytest.mark.parametrize("pattern", MOBY_BAD)
def test_malformed_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError):
        IgnoreMatcher([pattern])


# patternmatcher_test.go compileTests: match kind, and the regexp ("$" is "\Z" here).
@pytest.mark.parametrize(("pattern", "kind", "regex"), [
    ("*", "regexp", r"^[^/]*$"), ("file*", "regexp", r"^file[^/]*$"),
    ("*file", "regexp", r"^[^/]*file$"), ("a*/b", "regexp", r"^a[^/]*/b$"),
    ("**", "suffix", None), ("**/**", "regexp", r"^(.*/)?.*$"), ("dir/**", "prefix", None),
    ("**/dir", "suffix", None), ("**/dir2/*", "regexp", r"^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", "regexp", r"^(.*/)?dir2/.*$"), ("**file", "suffix", None),
    ("**/file*txt", "regexp", r"^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", r"^(.*/)?(.*/)?[^/]*\.txt$"), ("a[b-d]e", "regexp", r"^a[b-d]e$"),
    (".*", "regexp", r"^\.[^/]*$"), ("abc.def", "exact", None), ("abc?def", "regexp", r"^abc[^/]def$"),
    ("**/foo/bar", "suffix", None), ("a(b)c/def", "exact", None), ("a.|)$(}+{bc", "exact", None),
])
def test_patterns_compile_like_moby(pattern: str, kind: str, regex: str | None) -> None:
    source, found_kind = _translate(go_clean(pattern))
    assert found_kind == kind
    if regex is not None:
        assert source == regex[:-1] + r"\Z"


# --------------------------------------------------------------------------- our cases


@pytest.mark.parametrize(("pattern", "path", "expected"), [
    # ** at the start: any depth, including none
    ("**/*.pyc", "a.pyc", True), ("**/*.pyc", "x/y/z/a.pyc", True), ("**/*.pyc", "a.py", False),
    ("**/__pycache__", "__pycache__/m.pyc", True), ("**/__pycache__", "pkg/sub/__pycache__/m.pyc", True),
    # ** in the middle: zero or more directories
    ("src/**/test", "src/test", True), ("src/**/test", "src/a/b/test", True),
    ("src/**/test", "src/a/b/test/data.json", True), ("src/**/test", "srcx/test", False),
    ("src/**/test", "other/src/test", False),
    # ** at the end: everything below, not the directory itself
    ("logs/**", "logs/a", True), ("logs/**", "logs/a/b/c", True), ("logs/**", "logs", False),
    # * does not cross directories, but a match on a directory covers its contents
    ("*/temp*", "a/temporary", True), ("*/temp*", "a/b/temporary", False),
    ("*/temp*", "a/temp1/deep/file", True), ("*/*/temp*", "a/b/temp.txt", True),
    ("temp?", "temp1", True), ("temp?", "temp12", False), ("temp?", "temp1/inner", True),
    # a directory pattern excludes everything below it
    ("build", "build", True), ("build", "build/x/y", True), ("build", "builder", False),
    ("build", "src/build", False), ("build/", "build/out.o", True),
    ("/build", "build/out.o", True),
    # character classes
    ("file[0-9].txt", "file7.txt", True), ("file[0-9].txt", "filex.txt", False),
    ("file[!0-9]", "file!", True),  # Go has no "[!": "!" is a literal member of the class
])
def test_single_pattern_semantics(pattern: str, path: str, expected: bool) -> None:
    patterns = parse_ignore_file(pattern)
    assert IgnoreMatcher(patterns).ignored(path) is expected


def test_exception_after_exclusion_reincludes() -> None:
    matcher = IgnoreMatcher(["*.md", "!README.md"])
    assert matcher.ignored("CHANGES.md")
    assert not matcher.ignored("README.md")


def test_last_matching_pattern_wins() -> None:
    assert IgnoreMatcher(["!README.md", "*.md"]).ignored("README.md")
    matcher = IgnoreMatcher(["*.md", "!README*.md", "README-secret.md"])
    assert not matcher.ignored("README.md")
    assert matcher.ignored("README-secret.md")


def test_exception_reincludes_a_file_inside_an_excluded_directory() -> None:
    matcher = IgnoreMatcher(["dir", "!dir/keep"])
    assert matcher.ignored("dir")
    assert matcher.ignored("dir/other")
    assert matcher.ignored("dir/sub/file")
    assert not matcher.ignored("dir/keep")
    assert not matcher.ignored("dir/keep/inside")  # keep may be a directory


def test_exception_with_glob_inside_excluded_directory() -> None:
    matcher = IgnoreMatcher(["vendor", "!vendor/**/*.go"])
    assert not matcher.ignored("vendor/a/b/x.go")
    assert matcher.ignored("vendor/a/b/x.c")


def test_parent_results_follow_the_walk_not_a_flat_match() -> None:
    # BuildKit evaluates paths with MatchesUsingParentResults while walking: the third
    # pattern is skipped for "a" (already excluded), so it cannot cover "a/x" through
    # its parent, while the exception re-included "a/x" itself.
    matcher = IgnoreMatcher(["a", "!a/x", "a"])
    assert matcher.ignored("a")
    assert matcher.ignored("a/y")
    assert not matcher.ignored("a/x")


def test_match_with_parent_state_agrees_with_ignored() -> None:
    matcher = IgnoreMatcher(["**/*.log", "tmp", "!tmp/keep*", "docs/**", "!docs/api/**"])
    for path in ["a.log", "x/y.log", "tmp", "tmp/keep.txt", "tmp/other", "docs", "docs/a",
                 "docs/api/v1/index.html", "src/main.py"]:
        state = None
        parts = path.split("/")
        for i in range(len(parts)):
            result, state = matcher.match("/".join(parts[:i + 1]), state)
        assert result is matcher.ignored(path), path


def test_no_patterns_ignore_nothing() -> None:
    matcher = IgnoreMatcher([])
    assert not matcher
    assert not matcher.ignored("anything/at/all")


def test_root_is_never_ignored() -> None:
    assert not IgnoreMatcher(["**", "*"]).ignored(".")


def test_dockerignore_itself_can_be_excluded() -> None:
    matcher = IgnoreMatcher(parse_ignore_file(".dockerignore\nDockerfile\n"))
    assert matcher.ignored(".dockerignore")
    assert matcher.ignored("Dockerfile")


def test_patterns_are_exposed_cleaned() -> None:
    assert IgnoreMatcher(["  a/b/  ", "!c/./d", ""]).patterns == ("a/b", "!c/d")


# --------------------------------------------------------------------------- pruning


def test_without_exceptions_excluded_directories_are_pruned() -> None:
    matcher = IgnoreMatcher(["node_modules", "*.log"])
    assert not matcher.has_exceptions
    assert not matcher.may_contain_exceptions("node_modules")


def test_plain_exception_keeps_only_its_ancestors_walkable() -> None:
    matcher = IgnoreMatcher(["a", "!a/b/c"])
    assert matcher.may_contain_exceptions("a")
    assert matcher.may_contain_exceptions("a/b")
    assert not matcher.may_contain_exceptions("a/x")
    assert not matcher.may_contain_exceptions("other")
    assert not matcher.may_contain_exceptions("ab")


def test_trailing_glob_of_an_exception_is_ignored_for_pruning() -> None:
    matcher = IgnoreMatcher(["cache", "!cache/public/**"])
    assert matcher.may_contain_exceptions("cache")
    assert matcher.may_contain_exceptions("cache/public")
    assert not matcher.may_contain_exceptions("cache/private")


def test_glob_exception_disables_pruning_everywhere() -> None:
    matcher = IgnoreMatcher(["build", "!**/*.keep"])
    assert matcher.may_contain_exceptions("build")
    assert matcher.may_contain_exceptions("anything/else")
