"""py_script: a script's library (imported by tests) and its binary, from one declaration."""

def py_script(name, deps = [], data = [], **kwargs):
    """Declares `<name>_lib` (py_library over `<name>.py`) and `<name>` (py_binary over it).

    Tests import the library and never call main(); `bazel run //scripts:<name>` runs the binary.

    Args:
      name: the script's name; its source is `<name>.py`.
      deps: the script's dependencies (on the library).
      data: runtime files the script needs (on the library, so tests get them too).
      **kwargs: passed to both rules (e.g. tags).
    """
    native.py_library(
        name = name + "_lib",
        srcs = [name + ".py"],
        data = data,
        visibility = ["//tests:__subpackages__"],
        deps = deps,
        **kwargs
    )
    native.py_binary(
        name = name,
        srcs = [name + ".py"],
        python_version = "PY3",
        deps = [":" + name + "_lib"],
        **kwargs
    )
