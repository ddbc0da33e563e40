"""The command-line tools: `python -m vit_lib COMMAND` (or the `vit-COMMAND` console scripts).

`train` and `evaluate` wrap the lessons' engine for the terminal; `predict` classifies image
files; `grade`, `student` and `mirror` run the classroom tools. Each turns a user's mistake into
one `error:` line naming the flag to change (`common.run_cli`). The lessons do not teach this
layer; nothing else in vit_lib imports it.
"""
