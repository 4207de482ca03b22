"""Benchmarks that print numbers: `python -m capsviz.bench --help`.

training.py     capsviz's training step against the seed notebook's (reference.py), same run,
                each method in its own process
kernels.py      the CPU training path's layer choices against oneDNN
interaction.py  what the app does per input: inference with the trace, decode, figures
app.py          the running app (Streamlit's AppTest): a new drawing, a slider move
report.py       the Markdown table and the targets
Nothing here is imported by capsviz itself, and no test asserts a time.
"""
