"""Entry script of the lvlmsim explorer (`lvlmsim app`, or `streamlit run app/Home.py`).

It draws the shared sidebar setup, then runs the chosen page. Every page is a thin face over the public API.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:  # `explorer` sits next to this file, in a checkout and in an installed wheel
    sys.path.insert(0, str(APP_DIR))

from explorer.state import sidebar  # noqa: E402

st.set_page_config(page_title="lvlmsim explorer", page_icon="📐", layout="wide")

PAGES = [
    st.Page(str(APP_DIR / "views" / "overview.py"), title="Overview", url_path="overview", default=True),
    st.Page(str(APP_DIR / "views" / "roofline.py"), title="Roofline", url_path="roofline"),
    st.Page(str(APP_DIR / "views" / "breakdown.py"), title="Request breakdown", url_path="breakdown"),
    st.Page(str(APP_DIR / "views" / "serving.py"), title="Serving simulation", url_path="serving"),
    st.Page(str(APP_DIR / "views" / "techniques.py"), title="Technique comparison", url_path="techniques"),
    st.Page(str(APP_DIR / "views" / "planner.py"), title="Capacity planner", url_path="planner"),
]

page = st.navigation(PAGES, position="top")
sidebar()
page.run()
