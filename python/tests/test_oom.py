"""is_oom() and translate_oom(): poolside's OOM RuntimeError -> torch.cuda.OutOfMemoryError."""

from conftest import FAKE_TORCH, PYTHON_DIR, run_json

PATH = [PYTHON_DIR, FAKE_TORCH]
MSG = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 1.00 GiB free)"


def test_is_oom():
    got = run_json(f"""
        import json, torch, poolside.torch as pt
        print(json.dumps([pt.is_oom(RuntimeError({MSG!r})), pt.is_oom(torch.cuda.OutOfMemoryError("x")),
                          pt.is_oom(RuntimeError("shape mismatch")), pt.is_oom(ValueError({MSG!r}))]))
    """, PATH)
    assert got == [True, True, False, False]


def test_context_manager_translates_and_chains():
    got = run_json(f"""
        import json, torch, poolside.torch as pt
        try:
            with pt.translate_oom():
                raise RuntimeError({MSG!r})
        except torch.cuda.OutOfMemoryError as e:
            print(json.dumps([str(e), type(e.__cause__).__name__]))
    """, PATH)
    assert got == [MSG, "RuntimeError"]


def test_decorator_leaves_other_errors_alone():
    got = run_json("""
        import json, torch, poolside.torch as pt
        @pt.translate_oom()
        def f(exc):
            raise exc
        out = []
        for exc in (RuntimeError("shape mismatch"), torch.cuda.OutOfMemoryError("native"), KeyError("k")):
            try:
                f(exc)
            except Exception as e:
                out.append([type(e).__name__, e is exc])
        print(json.dumps(out))
    """, PATH)
    assert got == [["RuntimeError", True], ["OutOfMemoryError", True], ["KeyError", True]]


def test_without_torch_nothing_is_translated():
    got = run_json(f"""
        import json, poolside.torch as pt
        try:
            with pt.translate_oom():
                raise RuntimeError({MSG!r})
        except RuntimeError as e:
            print(json.dumps([type(e).__name__, pt.is_oom(e)]))
    """, [PYTHON_DIR])
    assert got == ["RuntimeError", True]
