"""pfs.cli.commands: splitting and parsing command lines, and the session's jobs."""

import io
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs import names
from pfs.cli.commands import ALIASES, COMMANDS, Session, parse, split
from pfs.errors import UsageError
from pfs.cli.jobs import JobManager
from pfs.cli.output import RICH_ROWS, PlainOutput, RichOutput, Table
from pfs.store.facade import Store

from helpers import CHUNK


def usage_error(fn, *args) -> str:
    """Call fn, which must raise a UsageError with a one-line message; return it."""
    with pytest.raises(UsageError) as info:
        fn(*args)
    message = str(info.value)
    assert message and "\n" not in message, repr(message)
    return message


# -- split --------------------------------------------------------------------------------

@pytest.mark.parametrize("line, tokens", [
    ("list", ["list"]),
    ("  get   1   out.bin  ", ["get", "1", "out.bin"]),
    ('put "my data.log"', ["put", "my data.log"]),
    ("put 'my data.log'", ["put", "my data.log"]),
    (r"put my\ data.log", ["put", "my data.log"]),
    ('put "it\'s here.txt"', ["put", "it's here.txt"]),
    ('get 1 "a dir/out file"', ["get", "1", "a dir/out file"]),
    ("put ''", ["put", ""]),
    ("# a comment line", []),
    ("list   # show everything", ["list"]),
    ("", []),
    ("\t", []),
])
def test_split(line, tokens):
    assert split(line) == tokens


@pytest.mark.parametrize("name", ["report#1.txt", "a#b", "C#notes.md"])
def test_hash_inside_a_word_is_part_of_the_name(name):
    """split() promises shell quoting rules: in a shell `#` starts a comment only
    at the start of a word, so `put report#1.txt` names the file report#1.txt."""
    assert split(f"put {name}") == ["put", name]


@pytest.mark.parametrize("line", ['put "my data.log', "put 'my data.log", 'get 1 "out', "put a\\"])
def test_unterminated_quote_is_a_usage_error(line):
    message = usage_error(split, line)
    assert "quote" in message or "escap" in message.lower() or "parse" in message


# -- parse --------------------------------------------------------------------------------

def test_unknown_command():
    message = usage_error(parse, ["frobnicate", "1"])
    assert "frobnicate" in message
    assert "help" in message


@pytest.mark.parametrize("tokens, word", [
    (["put"], "missing"),
    (["get"], "missing"),
    (["delete"], "missing"),
    (["info"], "missing"),
    (["put", "a", "b", "c"], "too many"),
    (["get", "1", "dest", "extra"], "too many"),
    (["delete", "1", "2"], "too many"),
    (["info", "1", "2"], "too many"),
    (["list", "x", "y"], "too many"),
    (["mv", "x"], "missing"),
    (["mv", "x", "y", "z"], "too many"),
    (["jobs", "x"], "too many"),
    (["wait", "x"], "too many"),
    (["exit", "now"], "too many"),
    (["help", "put", "get"], "too many"),
])
def test_wrong_number_of_arguments(tokens, word):
    message = usage_error(parse, tokens)
    command = COMMANDS[tokens[0]]
    assert word in message
    assert command.usage in message, "the message should show the usage"


@pytest.mark.parametrize("tokens, option", [
    (["get", "1", "--bogus"], "--bogus"),
    (["get", "1", "--Force"], "--Force"),
    (["list", "--force"], "--force"),
    (["put", "--all", "a"], "--all"),
    (["verify", "--salvage"], "--salvage"),
    (["delete", "1", "--force"], "--force"),
])
def test_unknown_option(tokens, option):
    message = usage_error(parse, tokens)
    assert "unknown option" in message
    assert repr(option) in message


def test_known_options_become_flags_in_any_position():
    command, args = parse(["get", "--salvage", "1", "--force", "out.bin"])
    assert command.name == "get"
    assert args.positional == ["1", "out.bin"]
    assert args.flags == {"--force", "--salvage"}
    command, args = parse(["verify", "--all"])
    assert args.positional == [] and args.flags == {"--all"}


def test_double_dash_makes_the_rest_positional():
    command, args = parse(["put", "--", "--weird-name.bin"])
    assert command.name == "put"
    assert args.positional == ["--weird-name.bin"]
    assert args.flags == frozenset()
    command, args = parse(["get", "1", "--", "--force"])
    assert args.positional == ["1", "--force"]
    assert args.flags == frozenset()
    # flags before the separator still count; the separator itself is not an argument
    command, args = parse(["get", "--force", "1", "--", "--salvage"])
    assert args.positional == ["1", "--salvage"] and args.flags == {"--force"}
    usage_error(parse, ["put", "--"])  # `--` alone is not a path
    usage_error(parse, ["put", "--", "a", "b", "c"])


def test_single_dash_words_are_options_and_dash_alone_is_an_argument():
    command, args = parse(["put", "-"])
    assert args.positional == ["-"]
    for tokens in (["put", "-f"], ["list", "-l"], ["get", "1", "-x"]):
        with pytest.raises(UsageError, match=f"unknown option '{tokens[-1]}'.*typed ./{tokens[-1]} or after --"):
            parse(tokens)
    command, args = parse(["put", "--", "-f"])
    assert args.positional == ["-f"]


def test_quoted_name_reaches_the_command_whole():
    command, args = parse(split('put "my data.log"'))
    assert command.name == "put"
    assert args.positional == ["my data.log"]


@pytest.mark.parametrize("alias, name", [("quit", "exit"), ("ls", "list"), ("rm", "delete"),
                                         ("QUIT", "exit"), ("Ls", "list")])
def test_aliases(alias, name):
    tokens = [alias] + (["1"] if name == "delete" else [])
    command, _ = parse(tokens)
    assert command.name == name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_names_are_case_insensitive(name):
    command = COMMANDS[name]
    tokens = [name.upper()] + ["1"] * command.min_args
    assert parse(tokens)[0] is command


@pytest.mark.parametrize("text", ["7", "007", "12"])
def test_an_ascii_number_is_an_id(text):
    assert names.is_id(text)


@pytest.mark.parametrize("text, name", [("abc", "abc"), ("-1", "-1"), ("1.5", "1.5"), ("²", "²"), ("١", "١"),
                                        ("./123", "123"), ("/123", "123"), ("/logs/a b.log", "logs/a b.log")])
def test_anything_else_is_a_name(text, name):
    assert not names.is_id(text)
    assert names.check(text) == name


@pytest.mark.parametrize("text, problem", [
    ("", "empty"), ("/", "empty"), ("a//b", "empty segment"), ("a/", "empty segment"), ("a/./b", "'.' segment"),
    ("../a", "'..' segment"), ("a/..", "'..' segment"), ("a\nb", "control"), ("a\x00b", "control"),
    ("a\x1b[31m", "control"), ("a\x85", "control"), ("x" * 256, "segment is longer than 255"),
    ("a/" * 4100 + "b", "longer than 8192")])
def test_bad_names_are_refused_in_one_line(text, problem):
    message = usage_error(names.check, text)
    assert problem in message and "\n" not in message


@pytest.mark.parametrize("typed, source, name", [(None, "a.log", "a.log"), ("logs/", "a.log", "logs/a.log"),
                                                 ("logs/b.log", "a.log", "logs/b.log")])
def test_put_target_names(typed, source, name):
    assert names.target(typed, source) == name


def test_short_flag_for_list():
    command, args = parse(["list", "-r", "logs"])
    assert args.positional == ["logs"] and args.flags == {"--recursive"}


def assert_parses_or_fails_in_one_line(tokens: list[str]) -> None:
    """parse() accepts the tokens within the command's arity and flags, or raises a one-line UsageError."""
    try:
        command, args = parse(tokens)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert command.min_args <= len(args.positional) <= command.max_args
    assert args.flags <= command.flags


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_line_splits_or_fails_with_a_usage_error(line):
    try:
        tokens = split(line)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    if not tokens:
        return
    assert_parses_or_fails_in_one_line(tokens)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(COMMANDS) + list(ALIASES) + ["1", "x", "--force", "--all", "--salvage",
                                                                   "--", "--x", "a b", ""]),
                min_size=1, max_size=6))
def test_any_token_list_parses_or_fails_with_a_usage_error(tokens):
    assert_parses_or_fails_in_one_line(tokens)


# -- the session (a real store, in this process) --------------------------------------------

@pytest.fixture
def session(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with Store(tmp_path / "store", {"chunk_size": CHUNK}, workers=1, max_memory=4 * CHUNK) as store:
        s = Session(store, PlainOutput(out, err))
        yield s, out, err
        s.finish()


def test_session_reports_a_bad_line_as_one_error_and_goes_on(session):
    s, out, err = session
    s.execute('put "unterminated')
    s.execute("frobnicate")
    s.execute("get abc")
    s.execute("help put")
    assert s.failures == 3
    lines = err.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    assert "put PATH" in out.getvalue()


def test_help_knows_the_aliases(session):
    """`quit` is a documented alias of `exit` (README: "`exit` (`quit`)"), so
    `help quit` should explain it rather than call it an unknown command."""
    s, out, err = session
    s.execute("help quit")
    assert err.getvalue() == ""
    assert COMMANDS["exit"].usage in out.getvalue()


# -- jobs ---------------------------------------------------------------------------------

def test_jobs_on_the_same_file_run_in_order():
    release = threading.Event()
    started = []
    jobs = JobManager(lambda job: None)
    first = jobs.start("put", 1, "f", 0, lambda job: (started.append("put"), release.wait(30)))
    second = jobs.start("get", 1, "f", 0, lambda job: started.append("get"))
    other = jobs.start("get", 2, "g", 0, lambda job: started.append("other"))
    assert other.finished.wait(30), "a job on another file should not wait"
    assert not second.finished.is_set()
    assert "get" not in started
    release.set()
    assert second.finished.wait(30)
    assert started.index("put") < started.index("get")
    assert first.error is None and second.error is None


def test_wait_all_waits_until_finished_jobs_are_reported():
    """The session counts failures in on_finish and computes the exit status
    right after wait_all(): wait_all() must not return while a job's result is
    still being reported, or a failed job can end a script with status 0."""
    release, reported = threading.Event(), threading.Event()

    def on_finish(job):
        release.wait(30)  # e.g. a slow terminal or a full stderr pipe
        reported.set()

    jobs = JobManager(on_finish)
    job = jobs.start("get", 1, "f", 0, lambda job: None)  # its work ends at once; reporting blocks
    waiter = threading.Thread(target=jobs.wait_all)
    waiter.start()
    waiter.join(0.5)
    returned_early = not waiter.is_alive()
    release.set()
    waiter.join(30)
    assert job.finished.wait(30) and reported.is_set()
    assert not returned_early, "wait_all() returned before the finished job was reported"


def test_a_long_table_prints_in_the_shell_as_the_plain_aligned_text_of_scripts(capsys):
    """rich takes about a millisecond a row to box a table (a minute and a half for
    a listing of 100,000 files): past RICH_ROWS rows the shell prints the plain
    aligned columns instead, exactly as a script gets them."""
    rows = [[str(i), f"logs/{i}.log"] for i in range(RICH_ROWS + 1)]
    long = Table(["id", "name"], rows, frozenset({"id"}))
    RichOutput().table(long)
    shell = capsys.readouterr().out
    PlainOutput().table(long)
    assert shell == capsys.readouterr().out
    assert shell.splitlines()[:2] == ["  id  name", "   0  logs/0.log"] and len(shell.splitlines()) == RICH_ROWS + 2
    RichOutput().table(Table(["id", "name"], rows[:RICH_ROWS], frozenset({"id"})))
    assert "logs/0.log" in capsys.readouterr().out.splitlines()[3], "a table up to RICH_ROWS rows is boxed"
