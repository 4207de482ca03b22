"""The Streamlit UI: the only part of capsviz that imports streamlit."""
