"""The classroom tools: what a teacher (and the project's checks) use around the lessons.

`exercises` holds the check functions that the lessons' exercises call; `grade` runs a folder
of submitted notebooks and writes a gradebook; `student` writes the student edition (solutions
removed) and marks cells for nbgrader; `mirror` checks that each lesson's `# export:` cells and
vit_lib say the same thing; `notebooks` reads and writes notebook files. The lessons do not
teach these, and the machinery (`vit_lib.machinery`) never imports them.
"""
