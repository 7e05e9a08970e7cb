"""Message classes of Prometheus remote write 1.0, built at import from descriptors.

The fields are those of ``prompb/remote.proto`` and ``prompb/types.proto`` of the
Prometheus repository (github.com/prometheus/prometheus, v2.42; the gogoproto options
dropped, as they change only Go code): ``WriteRequest``, ``TimeSeries``, ``Label``,
``Sample``, ``Exemplar``, ``MetricMetadata``. Native ``Histogram`` (field 4 of
``TimeSeries``) is declared without its fields: the receiver only counts them to refuse
a request carrying any. Building the descriptor here replaces a protoc-generated
``_pb2`` module (same wire format, no generated code to keep in step).
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    f = descriptor_pb2.FileDescriptorProto(name="fleetdeck/prompb_remote.proto", package="prometheus",
                                           syntax="proto3")

    def message(name: str, *fields: tuple) -> descriptor_pb2.DescriptorProto:
        msg = f.message_type.add(name=name)
        for number, fname, ftype, repeated, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype,
                                  label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = type_name
        return msg

    message("Label", (1, "name", _F.TYPE_STRING, False, None), (2, "value", _F.TYPE_STRING, False, None))
    message("Sample", (1, "value", _F.TYPE_DOUBLE, False, None), (2, "timestamp", _F.TYPE_INT64, False, None))
    message("Exemplar", (1, "labels", _F.TYPE_MESSAGE, True, ".prometheus.Label"),
            (2, "value", _F.TYPE_DOUBLE, False, None), (3, "timestamp", _F.TYPE_INT64, False, None))
    message("Histogram")
    message("TimeSeries", (1, "labels", _F.TYPE_MESSAGE, True, ".prometheus.Label"),
            (2, "samples", _F.TYPE_MESSAGE, True, ".prometheus.Sample"),
            (3, "exemplars", _F.TYPE_MESSAGE, True, ".prometheus.Exemplar"),
            (4, "histograms", _F.TYPE_MESSAGE, True, ".prometheus.Histogram"))
    meta = message("MetricMetadata", (1, "type", _F.TYPE_ENUM, False, ".prometheus.MetricMetadata.MetricType"),
                   (2, "metric_family_name", _F.TYPE_STRING, False, None),
                   (4, "help", _F.TYPE_STRING, False, None), (5, "unit", _F.TYPE_STRING, False, None))
    kinds = meta.enum_type.add(name="MetricType")
    for number, name in enumerate(("UNKNOWN", "COUNTER", "GAUGE", "HISTOGRAM", "GAUGEHISTOGRAM", "SUMMARY",
                                   "INFO", "STATESET")):
        kinds.value.add(name=name, number=number)
    request = message("WriteRequest", (1, "timeseries", _F.TYPE_MESSAGE, True, ".prometheus.TimeSeries"),
                      (3, "metadata", _F.TYPE_MESSAGE, True, ".prometheus.MetricMetadata"))
    request.reserved_range.add(start=2, end=3)
    return f


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str) -> type[Message]:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"prometheus.{name}"))


WriteRequest = _class("WriteRequest")
TimeSeries = _class("TimeSeries")
Label = _class("Label")
Sample = _class("Sample")
MetricMetadata = _class("MetricMetadata")
