"""Calibrated, protocol-aware private-inference cost model.

An export's ``Workload`` (op classes of its ONNX graph) becomes features
(``features``); per protocol, calibrated coefficients turn them into
communication (bytes, both directions), rounds and compute seconds, and
a stated network (RTT, bandwidth) into latency::

    latency = seconds + rounds * RTT + bytes * 8 / bandwidth

The coefficients live in ``calibration.json`` beside this file (package
data), written by ``benchmarks/pi_calibrate.py`` with their provenance
(command, date, machine, runtime versions, every micro-program measured);
a missing, unreadable or incomplete file raises ``CalibrationError``.
Protocols:

* ``crypten``: CrypTen 0.4.1, the model secret-shared by party 0: ReLU
  comparisons, and every Beaver product (linear layers, products with model
  constants, products of secrets) opens both operands (``opened``);
* ``spu-semi2k``, ``spu-cheetah``: SPU 0.9.5, the image secret and the
  model public: comparisons, products of two secrets, truncations after
  every fixed-point product; CHEETAH adds a one-time setup and the
  amortised refills of its oblivious-transfer buffers
  (``amortised_refills``).

Max-pooling windows, clips (ReLU6, hard sigmoid) and sigmoids (SiLU, the
gates, GELU's form) have coefficients of their own, as each runtime
computes them. The published garbled-circuit figures (``garbled``) stay as a
third, uncalibrated family.
"""

import dataclasses
import json
import math
from pathlib import Path

from keras_autorep.costs.workload import features

CALIBRATION_PATH = Path(__file__).resolve().parent / "calibration.json"


class CalibrationError(RuntimeError):
    """``calibration.json`` is missing, unreadable or incomplete."""


COEFFICIENTS = ("bytes", "rounds", "seconds", "setup_bytes", "provenance")


def calibration_path():
    """The calibration file ``calibration()`` reads."""
    return CALIBRATION_PATH


def calibration():
    """The calibrated coefficients (``{"protocols": {name: ...}}``);
    ``CalibrationError`` (one line) when the file is missing, is not JSON
    or a protocol lacks its coefficients."""
    path = calibration_path()
    try:
        table = json.loads(path.read_text())
    except OSError as error:
        raise CalibrationError(
            f"cannot read the PI calibration {path} ({error.strerror}): "
            "reinstall keras_autorep or run benchmarks/pi_calibrate.py"
        ) from error
    except ValueError as error:
        raise CalibrationError(
            f"the PI calibration {path} is not valid JSON ({error})"
        ) from error
    entries = table.get("protocols") if isinstance(table, dict) else None
    if not entries or not isinstance(entries, dict):
        raise CalibrationError(f"the PI calibration {path} has no protocols")
    for name, entry in entries.items():
        missing = [key for key in COEFFICIENTS
                   if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise CalibrationError(
                f"the PI calibration {path} lacks {', '.join(missing)} of "
                f"protocol {name!r}"
            )
    return table


def protocols():
    """Names of the calibrated protocols."""
    return tuple(calibration()["protocols"])


@dataclasses.dataclass(frozen=True)
class Network:
    """Stated network parameters of the latency prediction."""

    rtt_ms: float = 1.0
    bandwidth_mbps: float = 1000.0

    def text(self):
        return f"RTT {self.rtt_ms:g} ms, {self.bandwidth_mbps:,g} Mbit/s"

    @classmethod
    def parse(cls, text):
        """A named network (``NETWORKS``: ``lan``, ``wan``) or
        ``RTT_MS,MBPS``; ``ValueError`` (one line) otherwise."""
        if text in NETWORKS:
            return NETWORKS[text]
        parts = text.split(",")
        try:
            network = cls(float(parts[0]), float(parts[1]))
            if len(parts) != 2 or not (
                    0 <= network.rtt_ms < float("inf")
                    and 0 < network.bandwidth_mbps < float("inf")):
                raise ValueError
        except (ValueError, IndexError):
            raise ValueError(
                f"invalid network {text!r}: expected "
                f"{' or '.join(NETWORKS)}, or RTT_MS,MBPS such as 50,100 "
                "(a finite round-trip time >= 0 in ms, a bandwidth > 0 in "
                "Mbit/s)") from None
        return network


# Our stated networks (not measured ones): a data-centre LAN and a
# continental WAN.
NETWORKS = {"lan": Network(1.0, 1000.0), "wan": Network(50.0, 100.0)}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted cost of one inference under one protocol."""

    protocol: str
    bytes: float
    rounds: float
    seconds: float
    setup_bytes: float
    refills: float = 0.0  # amortised OT buffer refills (amortised_refills)

    def paying_whole_refills(self):
        """The predictions of one inference that pays the floor or the
        ceiling of the amortised refills, which is what a measurement of
        a few images can show (a refill falls on whichever inference
        empties a buffer); ``[self]`` without refills."""
        if not self.refills:
            return [self]
        cost = calibration()["protocols"][self.protocol]["refills"]
        return [dataclasses.replace(
            self, bytes=self.bytes + (paid - self.refills) * cost["bytes"],
            rounds=self.rounds + (paid - self.refills) * cost["actions"],
            refills=float(paid))
            for paid in sorted({math.floor(self.refills),
                                math.ceil(self.refills)})]

    def nearest_paid(self, rounds):
        """Of ``paying_whole_refills()``, the prediction whose rounds are
        nearest the measured ``rounds``: what to hold a measurement of a
        few images against."""
        return min(self.paying_whole_refills(),
                   key=lambda paid: abs(paid.rounds - rounds))

    def latency_ms(self, network):
        return 1e3 * (
            self.seconds + self.rounds * network.rtt_ms / 1e3
            + self.bytes * 8 / (network.bandwidth_mbps * 1e6)
        )

    def to_dict(self, network):
        return dict(dataclasses.asdict(self),
                    latency_ms=self.latency_ms(network))


def predictor(protocol):
    """``workload -> Prediction`` under a calibrated protocol, the
    calibration read once."""
    table = calibration()["protocols"]
    if protocol not in table:
        raise ValueError(
            f"no calibration for protocol {protocol!r}; calibrated: "
            f"{sorted(table)} (run benchmarks/pi_calibrate.py)"
        )
    coefficients = table[protocol]

    def predicted(workload):
        values = features(workload)

        def total(key):
            return sum(coefficients[key].get(name, 0.0) * value
                       for name, value in values.items())

        refill = coefficients.get("refills", {"bytes": 0, "actions": 0})
        refills = amortised_refills(coefficients, values)
        return Prediction(
            protocol, total("bytes") + refills * refill["bytes"],
            total("rounds") + refills * refill["actions"],
            total("seconds"), coefficients["setup_bytes"], refills)

    return predicted


def amortised_refills(coefficients, values):
    """OT buffer refills per inference (CHEETAH's Ferret OT extension,
    ``benchmarks/cheetah_refills.py``): refills per element of each
    feature, times the features ``values``; 0 for a protocol without
    ``refills``. A session's buffers outlive an inference, so a refill
    lands on whichever inference empties one: the amortised figure."""
    rates = coefficients.get("refills", {}).get("per_element", {})
    return sum(rate * values.get(name, 0) for name, rate in rates.items())


def predict(workload, protocol):
    """The ``Prediction`` of ``workload`` under a calibrated protocol."""
    return predictor(protocol)(workload)


def provenance(protocol):
    """One line: where ``protocol``'s coefficients come from."""
    source = calibration()["protocols"][protocol]["provenance"]
    versions = ", ".join(f"{k} {v}" for k, v in source["versions"].items())
    return (f"{protocol}: {source['runtime']}; {versions}; measured "
            f"{source['date']} on {source['machine']} by "
            f"`{source['command'].strip()}`")
