"""Pusher Channels compatibility with the unmodified `pusher` server library from PyPI (a second
server library, in another language than the npm one in tests/pusher), against a real
`signalbox serve`; Pusher protocol 7 is spoken by hand over `websockets` on the client side.

Run by scripts/test.sh (which installs `pusher` into .cache/pyclients) with SIGNALBOX_BIN
pointing at the binary: `python -m unittest discover tests/pusher-python`.
"""

import contextlib
import json
import os
import sys
import unittest

import pusher
from websockets.sync.client import connect

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python-support"))
from signalbox_server import DEADLINE, Server as BaseServer  # noqa: E402


class Server(BaseServer):
    """`signalbox serve` on a free port, with an app that accepts Pusher clients, and its key."""

    def __init__(self):
        super().__init__({"pusher": {"enabled": True}})
        self.credentials = self.key["pusher"]

    def library(self, secret=None):
        c = self.credentials
        return pusher.Pusher(app_id=c["app_id"], key=c["key"], secret=secret or c["secret"],
                             host="127.0.0.1", port=self.port, ssl=False)


class Socket:
    """A Pusher protocol 7 client, by hand."""

    def __init__(self, server):
        url = f"ws://127.0.0.1:{server.port}/app/{server.credentials['key']}?protocol=7&client=python&version=1"
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(url, open_timeout=DEADLINE))
        established = self.next()
        assert established["event"] == "pusher:connection_established", established
        data = json.loads(established["data"])
        assert data["activity_timeout"] > 0
        self.socket_id = data["socket_id"]

    def next(self):
        return json.loads(self.ws.recv(timeout=DEADLINE))

    def next_event(self, name):
        while True:
            message = self.next()
            if message["event"] == name:
                return message

    def send(self, event, data, channel=None):
        message = {"event": event, "data": data}
        if channel:
            message["channel"] = channel
        self.ws.send(json.dumps(message))

    def subscribe(self, channel, auth=None, channel_data=None):
        data = {"channel": channel}
        if auth:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        return self.next_event_on(channel)

    def next_event_on(self, channel):
        while True:
            message = self.next()
            if message.get("channel") == channel:
                return message

    def close(self):
        self.stack.close()


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server()


def tearDownModule():
    SERVER.stop()


class PusherPython(unittest.TestCase):
    def test_triggers_reach_public_and_private_channels(self):
        library = SERVER.library()
        client = Socket(SERVER)
        try:
            ok = client.subscribe("py-news")
            self.assertEqual(ok["event"], "pusher_internal:subscription_succeeded")
            library.trigger("py-news", "update", {"n": 1, "text": "héllo"})
            message = client.next_event("update")
            self.assertEqual((message["channel"], json.loads(message["data"])), ("py-news", {"n": 1, "text": "héllo"}))

            auth = library.authenticate(channel="private-py", socket_id=client.socket_id)
            ok = client.subscribe("private-py", auth["auth"])
            self.assertEqual(ok["event"], "pusher_internal:subscription_succeeded")
            refused = client.subscribe("private-other", auth["auth"])
            self.assertEqual(refused["event"], "pusher:subscription_error", "a signature is for one channel")

            library.trigger_batch([
                {"channel": "py-news", "name": "first", "data": json.dumps({"n": 1})},
                {"channel": "private-py", "name": "second", "data": json.dumps({"n": 2})},
            ])
            # Two channels: their messages may come in either order.
            got = {}
            while len(got) < 2:
                message = client.next()
                if message["event"] in ("first", "second"):
                    got[message["event"]] = json.loads(message["data"])
            self.assertEqual(got, {"first": {"n": 1}, "second": {"n": 2}})

            info = library.channel_info("py-news", ["subscription_count"])
            self.assertEqual(info, {"occupied": True, "subscription_count": 1})
            listed = library.channels_info(prefix_filter="py-")
            self.assertEqual(listed, {"channels": {"py-news": {}}}, "the occupied py- channels")
            with self.assertRaises(pusher.errors.PusherBadRequest):
                library.channels_info(prefix_filter="py-", attributes=["user_count"])
        finally:
            client.close()

    def test_a_trigger_leaves_its_socket_out(self):
        library = SERVER.library()
        sender, other = Socket(SERVER), Socket(SERVER)
        try:
            for socket_ in (sender, other):
                socket_.subscribe("py-scores")
            library.trigger("py-scores", "goal", {"n": 1}, socket_id=sender.socket_id)
            library.trigger("py-scores", "goal", {"n": 2})
            self.assertEqual(json.loads(other.next_event("goal")["data"]), {"n": 1})
            self.assertEqual(json.loads(sender.next_event("goal")["data"]), {"n": 2}, "the first left the sender out")
        finally:
            sender.close()
            other.close()

    def test_presence_members_are_users_and_the_signature_covers_who(self):
        library = SERVER.library()
        ann, bob = Socket(SERVER), Socket(SERVER)
        try:
            data = {"user_id": "ann", "user_info": {"name": "Ann"}}
            auth = library.authenticate(channel="presence-py", socket_id=ann.socket_id, custom_data=data)
            ok = ann.subscribe("presence-py", auth["auth"], auth["channel_data"])
            self.assertEqual(ok["event"], "pusher_internal:subscription_succeeded")
            presence = json.loads(ok["data"])["presence"]
            self.assertEqual((presence["ids"], presence["hash"], presence["count"]), (["ann"], {"ann": {"name": "Ann"}}, 1))

            # A signature over another user's channel_data does not let bob in as ann.
            forged = json.dumps({"user_id": "ann"})
            refused = bob.subscribe("presence-py", auth["auth"], forged)
            self.assertEqual(refused["event"], "pusher:subscription_error")
            self.assertEqual(bob.subscribe("presence-py", auth["auth"])["event"], "pusher:subscription_error",
                             "presence needs channel_data")

            auth = library.authenticate(channel="presence-py", socket_id=bob.socket_id, custom_data={"user_id": 42})
            self.assertEqual(bob.subscribe("presence-py", auth["auth"], auth["channel_data"])["event"],
                             "pusher_internal:subscription_succeeded", "a numeric user id is a user id")
            added = ann.next_event("pusher_internal:member_added")
            self.assertEqual(json.loads(added["data"]), {"user_id": "42", "user_info": None})
            self.assertEqual(library.users_info("presence-py"), {"users": [{"id": "42"}, {"id": "ann"}]})
            self.assertEqual(library.channel_info("presence-py", ["user_count"]), {"occupied": True, "user_count": 2})
        finally:
            ann.close()
            bob.close()

    def test_a_signed_in_user_and_nobody_else_gets_their_own_channel(self):
        library = SERVER.library()
        eve, mallory = Socket(SERVER), Socket(SERVER)
        try:
            signed = library.authenticate_user(eve.socket_id, {"id": "eve", "user_info": {"n": 1}})
            eve.send("pusher:signin", {"auth": signed["auth"], "user_data": signed["user_data"]})
            success = eve.next_event("pusher:signin_success")
            self.assertEqual(json.loads(json.loads(success["data"])["user_data"])["id"], "eve")
            self.assertEqual(eve.subscribe("#server-to-user-eve")["event"], "pusher_internal:subscription_succeeded")

            # Not signed in, or signed in as someone else: refused; a replayed signature too.
            self.assertEqual(mallory.subscribe("#server-to-user-eve")["event"], "pusher:subscription_error")
            mallory.send("pusher:signin", {"auth": signed["auth"], "user_data": signed["user_data"]})
            self.assertEqual(mallory.next_event("pusher:error")["event"], "pusher:error", "eve's signature is eve's socket's")

            library.send_to_user("eve", "secret", {"for": "eve"})
            message = eve.next_event("secret")
            self.assertEqual((message["channel"], json.loads(message["data"])), ("#server-to-user-eve", {"for": "eve"}))
        finally:
            eve.close()
            mallory.close()

    def test_refusals_are_the_libraries_exceptions(self):
        with self.assertRaises(pusher.errors.PusherBadAuth):
            SERVER.library(secret="not-the-secret").trigger("py-news", "e", {})
        with self.assertRaises(pusher.errors.PusherBadRequest):
            SERVER.library().channel_info("py-news", ["user_count"])
        # The library's own path for terminating a user's connections (without the app id).
        self.assertEqual(SERVER.library().terminate_user_connections("nobody"), {})


if __name__ == "__main__":
    unittest.main()
