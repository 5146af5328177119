#!/usr/bin/python3
"""One MQTT 5 request/response exchange for fieldbridge integration tests.

Connects to a broker with Debian's python3-paho-mqtt as an MQTT 5 client,
subscribes to the response topic, publishes the request with the Response
Topic and Correlation Data properties, and prints what comes back on the
response topic as one JSON line:

  {"topic": T, "payload": P, "correlation": HEX, "content_type": C}

then exits 0. Exits 1 with a message on stderr if nothing comes back within
--timeout seconds, or the connection fails.
"""

import argparse
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--payload", required=True)
    parser.add_argument("--response-topic", required=True)
    parser.add_argument("--correlation", required=True, help="hex")
    parser.add_argument("--retain", action="store_true")
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()

    subscribed = threading.Event()
    answered = threading.Event()
    answer = {}

    def on_connect(client, _userdata, _flags, reason, _props):
        if reason != 0:
            print(f"connect refused: {reason}", file=sys.stderr)
            answered.set()
            return
        client.subscribe(args.response_topic, qos=1)

    def on_subscribe(_client, _userdata, _mid, _codes, _props):
        subscribed.set()

    def on_message(_client, _userdata, msg):
        props = msg.properties
        answer.update(
            topic=msg.topic,
            payload=msg.payload.decode("utf-8", "replace"),
            correlation=(getattr(props, "CorrelationData", b"") or b"").hex(),
            content_type=getattr(props, "ContentType", ""),
        )
        answered.set()

    client = mqtt.Client(client_id="", protocol=mqtt.MQTTv5)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()
    try:
        if not subscribed.wait(args.timeout):
            print("no SUBACK", file=sys.stderr)
            return 1
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = args.response_topic
        props.CorrelationData = bytes.fromhex(args.correlation)
        client.publish(args.topic, args.payload, qos=1, retain=args.retain, properties=props).wait_for_publish(args.timeout)
        if not answered.wait(args.timeout) or not answer:
            print("no response", file=sys.stderr)
            return 1
        print(json.dumps(answer), flush=True)
        return 0
    finally:
        client.disconnect()
        client.loop_stop()


if __name__ == "__main__":
    sys.exit(main())
