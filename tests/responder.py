"""A mitmproxy script for tests: the proxy answers every request itself (with
connection_strategy=lazy nothing leaves the machine), and serves a few HTML pages."""

import json

from mitmproxy import http

NEWSLETTER_PAGE = """<!doctype html><html><body>
<h1>Boutique Exemple</h1>
<form id="signup" method="post" action="https://forms.tracker-widget.example/submit">
  <input type="email" name="email" value="lea.martin@example.com">
  <input type="text" name="first_name" value="Léa">
  <input type="checkbox" name="newsletter" checked> Je souhaite recevoir les offres et la newsletter
  <button type="submit">OK</button>
</form>
<script>document.getElementById("signup").submit();</script>
</body></html>"""
PAGES = {"/newsletter": NEWSLETTER_PAGE}


class Responder:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.request.pretty_host.endswith(".invalid"):
            return
        page = PAGES.get(flow.request.path.split("?")[0])
        if page is not None:
            flow.response = http.Response.make(200, page, {"content-type": "text/html; charset=utf-8"})
            return
        body = {"id": "cus_test_0001", "object": "customer", "ok": True}
        flow.response = http.Response.make(200, json.dumps(body), {"content-type": "application/json"})


addons = [Responder()]
