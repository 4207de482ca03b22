"""Analysis: what the views and commands measure (routing X-ray, inference, perturbations, claims); no streamlit."""
