"""Baseline: a plain Tornado handler returning the same JSON as GET /api/session."""
import json
import sys

import tornado.ioloop
import tornado.web

BODY = json.dumps({"username": "admin", "display_name": "admin", "user_id": "AbC123", "is_admin": True})


class Session(tornado.web.RequestHandler):
    def get(self):
        if not self.request.headers.get("Authorization", "").startswith("Bearer "):
            self.set_status(401)
        self.set_header("Content-Type", "application/json")
        self.finish(BODY)


if __name__ == "__main__":
    app = tornado.web.Application([(r"/api/session", Session)], log_function=lambda h: None)
    app.listen(int(sys.argv[1]), "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()
