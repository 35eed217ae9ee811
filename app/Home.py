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

# The default page is served at the app's root: Streamlit gives it the public path "" whatever its url_path, so a
# typed or shared /overview matched no page and the app showed "Page not found" before running the default page.
# The hidden alias below owns /overview and hands over to the root page with the URL's setup kept.
OVERVIEW = st.Page(str(APP_DIR / "views" / "overview.py"), title="Overview", url_path="home", default=True)


def _overview_alias() -> None:
    """/overview: the Overview page at its canonical address, the root, with the same query parameters."""
    st.switch_page(OVERVIEW, query_params={k: st.query_params.get_all(k) for k in st.query_params.keys()})


PAGES = [
    OVERVIEW,
    st.Page(_overview_alias, title="Overview", url_path="overview", visibility="hidden"),
    st.Page(str(APP_DIR / "views" / "roofline.py"), title="Roofline", url_path="roofline"),
    st.Page(str(APP_DIR / "views" / "breakdown.py"), title="Request breakdown", url_path="breakdown"),
    st.Page(str(APP_DIR / "views" / "serving.py"), title="Serving simulation", url_path="serving"),
    st.Page(str(APP_DIR / "views" / "bench.py"), title="Benchmark", url_path="bench"),
    st.Page(str(APP_DIR / "views" / "techniques.py"), title="Technique comparison", url_path="techniques"),
    st.Page(str(APP_DIR / "views" / "planner.py"), title="Capacity planner", url_path="planner"),
]

page = st.navigation(PAGES, position="top")
sidebar()
page.run()
