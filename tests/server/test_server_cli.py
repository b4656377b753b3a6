"""`python -m minivllm.server`: its flags, and start-up failures that end in one clear line."""

import socket
import subprocess
import sys

import pytest

from minivllm.server.__main__ import main
from minivllm.server.cli_args import engine_config_from_args, parse_args


def run_server(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minivllm.server", *args],
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int, fragment: str):
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m minivllm.server: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--attention", "flash"], "invalid choice: 'flash'"),
    (["--max-num-seqs", "0"], "must be a positive integer"),
])
def test_bad_flag_is_one_line_and_exit_2(args, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(args)
    assert_one_line_error(subprocess.CompletedProcess(args, e.value.code, "",
                                                      capsys.readouterr().err), 2, fragment)


def test_missing_model_is_one_line_and_exit_1():
    assert_one_line_error(run_server("--port", "0", "--model", "/no/such/model"), 1,
                          "/no/such/model")


@pytest.mark.parametrize(("args", "fragment"), [
    (["--block-size", "12"], "block_size must be a power of two"),
    (["--chat-template", "/no/such/template.jinja"], "failed to be opened"),
])
def test_bad_value_fails_before_loading_the_model(args, fragment, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--port", "0", *args])
    assert str(e.value.code).startswith("python -m minivllm.server: error: ")
    assert fragment in str(e.value.code)
    assert "Model loading" not in capsys.readouterr().out


def test_busy_port_fails_before_loading_the_model(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit) as e:
            main(["--port", str(taken.getsockname()[1])])
    assert "Address already in use" in str(e.value.code)
    assert "Model loading" not in capsys.readouterr().out


def test_help_lists_vllm_flags(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ["--model", "--served-model-name", "--host", "--port", "--max-model-len",
                 "--gpu-memory-utilization", "--max-num-seqs", "--max-num-batched-tokens",
                 "--tensor-parallel-size", "--block-size", "--dtype", "--seed", "--api-key",
                 "--chat-template", "--enable-prefix-caching", "--enable-chunked-prefill",
                 "--enforce-eager", "--uvicorn-log-level", "--kv-allocator", "--attention",
                 "--scheduler", "--num-gpu-blocks-override"]:
        assert flag in out, flag


def test_flags_map_onto_engine_config(monkeypatch):
    monkeypatch.setenv("MINIVLLM_API_KEY", "from-env")
    args = parse_args(["--max-model-len", "256", "--max-num-seqs", "8", "--block-size", "32",
                       "--enable-prefix-caching", "--kv-allocator", "reserved",
                       "--scheduler", "static", "--num-gpu-blocks-override", "10",
                       "--dtype", "float32", "-tp", "1", "--device", "cpu"])
    assert args.api_key == "from-env"
    assert args.served_model_name == [args.model]
    config = engine_config_from_args(args)
    assert (config.max_model_len, config.max_num_seqs, config.block_size) == (256, 8, 32)
    assert config.enable_prefix_caching and config.kv_allocator == "reserved"
    assert config.scheduler == "static" and config.num_gpu_blocks_override == 10
    assert parse_args(["--api-key", "flag"]).api_key == "flag"


def test_positional_model_like_vllm_serve(tmp_path):
    assert parse_args([str(tmp_path)]).model == str(tmp_path)
    assert parse_args([str(tmp_path)]).served_model_name == [str(tmp_path)]
