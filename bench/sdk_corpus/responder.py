"""The mitmdump script record.py loads: the proxy answers every request itself, so with
`connection_strategy=lazy` nothing leaves the machine. Each vendor gets a reply shaped like its
API's, enough for its SDK to carry on (a wrong shape only makes the SDK raise, after sending)."""

import json

from mitmproxy import http

REPLIES = {
    "api.sendgrid.com": (202, None),
    "eu.i.posthog.com": (200, {"status": 1}),
    "api.eu.amplitude.com": (200, {"code": 200, "events_ingested": 1,
                                   "payload_size_bytes": 100, "server_upload_time": 1}),
    "a.klaviyo.com": (201, {"data": {"type": "profile", "id": "01JSYNTHETIC000000000000"}}),
    "api.resend.com": (200, {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}),
    "api.mailjet.com": (200, {"Messages": [{"Status": "success"}], "Data": [], "Count": 0}),
    "api-eu.pusher.com": (200, {}),
}


class Responder:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        host = flow.request.pretty_host
        status, body = REPLIES.get(host, (200, {"id": "synthetic-0001", "ok": True, "taskID": 1,
                                               "objectIDs": [], "hits": [], "status": "ok"}))
        content = b"" if body is None else json.dumps(body).encode()
        flow.response = http.Response.make(status, content, {"content-type": "application/json"})


addons = [Responder()]
