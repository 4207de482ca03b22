"""capsviz: `streamlit run app.py`. Thin on purpose: the UI lives in capsviz/ui/."""

from capsviz.ui.app import main

main()
