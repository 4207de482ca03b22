"""Figures: Plotly builders, arrays in and `go.Figure` out; no streamlit."""
