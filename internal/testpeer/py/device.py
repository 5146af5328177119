#!/usr/bin/python3
"""Simulated Modbus field device for fieldbridge integration tests.

Runs a pymodbus 3.0.0 server (Modbus TCP, or RTU on a serial port) whose
content comes from a JSON spec written by the Go package
internal/testpeer, and takes control commands as JSON lines on stdin.
Every command is answered by one JSON line on stdout carrying the same
"id", after the change has been applied, so the Go side knows the
device state when its call returns.

Protocol on stdout (one JSON object per line):
  {"event": "ready", "port": N}      server listening (TCP) / port open (RTU)
  {"id": I, "ok": true, ...}         command I applied
  {"id": I, "ok": false, "error": S} command I rejected

Commands on stdin:
  {"id": I, "op": "set", "unit": U, "table": T, "addr": A, "values": [...]}
  {"id": I, "op": "silent", "unit": U, "silent": true|false}
  {"id": I, "op": "requests"}          -> {"requests": {"U": count, ...}}
  {"id": I, "op": "get", "unit": U, "table": T, "addr": A, "count": N}
                                       -> {"values": [...]} (the device's content)
  {"id": I, "op": "functions", "unit": U}
                                       -> {"functions": [fc, ...]} the function
                                          codes of the last 256 requests to U
  {"id": I, "op": "ping"}
End of stdin stops the server and the process.

Why the pymodbus internals are touched (all checked against 3.0.0):
- The framers drop a frame whose unit id is not in context.slaves()
  before anything else sees it, so slaves() claims every unit id: the
  request handler below then sees every request, counts it per unit,
  and decides itself whether to answer.
- A silent (or unknown) unit gets no reply at all: the handler returns
  without sending. ignore_missing_slaves=True is set as well so that the
  stock path could never answer "gateway no response" (0x0B) instead.
- Exception ranges are answered from the handler with
  request.doException(code), which allows any code, not only the
  "illegal address" (2) that a failed validate() would produce.
- The datastore is zero-based (protocol address == register number), the
  same as ModbusSlaveContext(zero_mode=True); every address 0..65535
  exists and reads 0/False unless the spec or a "set" says otherwise.
"""

import argparse
import asyncio
import json
import logging
import sys

from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchSlaveException
from pymodbus.interfaces import IModbusSlaveContext
from pymodbus.server.async_io import (
    ModbusConnectedRequestHandler,
    ModbusSerialServer,
    ModbusSingleRequestHandler,
    ModbusTcpServer,
)
from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer

TABLES = {"holding": "h", "input": "i", "coil": "c", "discrete": "d"}
BIT_TABLES = ("c", "d")
ALL_UNITS = list(range(256))


def emit(obj):
    """Write one JSON line to stdout, unbuffered for the Go reader."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class UnitContext(IModbusSlaveContext):
    """Sparse, zero-based register store of one unit id."""

    def __init__(self, spec=None):
        self.store = {"h": {}, "i": {}, "c": {}, "d": {}}
        for name, key in TABLES.items():
            for addr, value in ((spec or {}).get(name) or {}).items():
                self.put(key, int(addr), [value])

    def put(self, key, address, values):
        if address < 0 or address + len(values) > 65536:
            raise ValueError(f"address {address}+{len(values)} out of range")
        table = self.store[key]
        for offset, value in enumerate(values):
            if key in BIT_TABLES:
                table[address + offset] = bool(value)
            else:
                value = int(value)
                if not 0 <= value <= 0xFFFF:
                    raise ValueError(f"register value {value} out of range")
                table[address + offset] = value

    def reset(self):
        for table in self.store.values():
            table.clear()

    def validate(self, fx, address, count=1):
        return address >= 0 and count >= 0 and address + count <= 65536

    def getValues(self, fx, address, count=1):  # pylint: disable=invalid-name
        key = self.decode(fx)
        default = False if key in BIT_TABLES else 0
        table = self.store[key]
        return [table.get(a, default) for a in range(address, address + count)]

    def setValues(self, fx, address, values):  # pylint: disable=invalid-name
        self.put(self.decode(fx), address, values)


class DeviceServerContext(ModbusServerContext):
    """Server context that lets every unit id through the framer."""

    def __init__(self, units):
        super().__init__(slaves=None, single=False)
        self.units = units

    def slaves(self):
        return list(ALL_UNITS)

    def __contains__(self, unit):
        return unit in self.units

    def __getitem__(self, unit):
        if unit in self.units:
            return self.units[unit]
        raise NoSuchSlaveException(f"unit {unit} does not exist")


def accessed(request):
    """Return [(table, start, count)] touched by a request."""
    fc = request.function_code
    if fc in (1, 2, 3, 4):
        table = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}[fc]
        return [(table, request.address, request.count)]
    if fc == 5:
        return [("coil", request.address, 1)]
    if fc == 15:
        return [("coil", request.address, len(request.values))]
    if fc in (6, 22):
        return [("holding", request.address, 1)]
    if fc == 16:
        return [("holding", request.address, len(request.values))]
    if fc == 23:
        return [
            ("holding", request.read_address, request.read_count),
            ("holding", request.write_address, request.write_count),
        ]
    return []


class Device:
    """Device state shared by the request handler and the control loop."""

    def __init__(self, spec):
        self.units = {}
        for unit, unit_spec in (spec.get("units") or {}).items():
            self.units[int(unit)] = UnitContext(unit_spec)
        self.silent = set(int(u) for u in (spec.get("silent") or []))
        self.exceptions = list(spec.get("exceptions") or [])
        self.requests = {}
        self.functions = {}
        self.context = DeviceServerContext(self.units)

    def exception_for(self, unit, request):
        for table, start, count in accessed(request):
            if count <= 0:
                continue
            end = start + count - 1
            for exc in self.exceptions:
                if (
                    exc["unit"] == unit
                    and exc["table"] == table
                    and start <= exc["end"]
                    and end >= exc["start"]
                ):
                    return exc["code"]
        return 0

    def apply(self, msg):
        op = msg.get("op")
        if op == "ping":
            return {}
        if op == "requests":
            return {"requests": {str(u): n for u, n in self.requests.items()}}
        unit = int(msg["unit"])
        if op == "functions":
            return {"functions": list(self.functions.get(unit, []))}
        if op == "get":
            key = TABLES.get(msg["table"])
            if key is None:
                raise ValueError(f"unknown table {msg['table']!r}")
            ctx = self.units.get(unit) or UnitContext()
            fx = {"c": 1, "d": 2, "h": 3, "i": 4}[key]
            return {"values": ctx.getValues(fx, int(msg["addr"]), int(msg["count"]))}
        if op == "silent":
            if msg["silent"]:
                self.silent.add(unit)
            else:
                self.silent.discard(unit)
            return {}
        if op == "set":
            key = TABLES.get(msg["table"])
            if key is None:
                raise ValueError(f"unknown table {msg['table']!r}")
            if unit not in self.units:
                # A unit that was not in the spec starts to answer.
                self.units[unit] = UnitContext()
            self.units[unit].put(key, int(msg["addr"]), msg["values"])
            return {}
        raise ValueError(f"unknown op {op!r}")


class DeviceHandlerMixin:
    """Counts requests per unit, keeps silent units silent, raises ranges."""

    def execute(self, request, *addr):
        dev = self.server.fb_device
        unit = request.unit_id
        dev.requests[unit] = dev.requests.get(unit, 0) + 1
        log = dev.functions.setdefault(unit, [])
        log.append(request.function_code)
        del log[:-256]
        if unit in dev.silent or unit not in dev.units:
            return  # like a dead RTU slave: nothing at all on the wire
        code = dev.exception_for(unit, request)
        if code:
            response = request.doException(code)
            response.transaction_id = request.transaction_id
            response.unit_id = unit
            self.send(response, *addr)
            return
        super().execute(request, *addr)


class TcpHandler(DeviceHandlerMixin, ModbusConnectedRequestHandler):
    """Modbus TCP connection handler with device behaviour."""


class SerialHandler(DeviceHandlerMixin, ModbusSingleRequestHandler):
    """Serial line handler with device behaviour."""


async def start_tcp(dev, host, port):
    server = ModbusTcpServer(
        dev.context,
        framer=ModbusSocketFramer,
        address=(host, port),
        handler=TcpHandler,
        ignore_missing_slaves=True,
    )
    server.fb_device = dev
    task = asyncio.create_task(server.serve_forever())
    # serve_forever sets `serving` once bound; a bind error ends the task.
    await asyncio.wait([task, server.serving], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
        raise RuntimeError("tcp server stopped before serving")
    return server, server.server.sockets[0].getsockname()[1]


async def start_rtu(dev, path, baudrate):
    # The async serial server's default framer is ASCII: pass RTU. A pty
    # refuses parity E/O through pyserial, so the device side runs 8N1.
    server = ModbusSerialServer(
        dev.context,
        framer=ModbusRtuFramer,
        port=path,
        baudrate=baudrate,
        bytesize=8,
        parity="N",
        stopbits=1,
        handler=SerialHandler,
        ignore_missing_slaves=True,
    )
    server.fb_device = dev
    await server.start()
    if server.transport is None:
        raise RuntimeError(f"cannot open serial port {path}")
    return server


async def control_loop(dev):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while True:
        line = await reader.readline()
        if not line:
            return
        line = line.strip()
        if not line:
            continue
        ident = None
        try:
            msg = json.loads(line)
            ident = msg.get("id")
            reply = dev.apply(msg)
            emit({"id": ident, "ok": True, **reply})
        except Exception as exc:  # pylint: disable=broad-except
            emit({"id": ident, "ok": False, "error": f"{type(exc).__name__}: {exc}"})


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--mode", choices=("tcp", "rtu"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--serial")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    # pymodbus calls basicConfig when imported: force ours.
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    if not args.debug:
        # Every exception response is logged as an ERROR: expected here.
        logging.getLogger("pymodbus.pdu").setLevel(logging.CRITICAL)
    with open(args.spec, encoding="utf-8") as spec_file:
        dev = Device(json.load(spec_file))
    if args.mode == "tcp":
        server, port = await start_tcp(dev, args.host, args.port)
    else:
        server, port = await start_rtu(dev, args.serial, args.baudrate), 0
    emit({"event": "ready", "port": port})
    await control_loop(dev)
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
