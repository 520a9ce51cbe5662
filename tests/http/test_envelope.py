"""Nacos's ErrorCode for each refusal the registry answers (nacos_actors.http.envelope): the
messages are the cores' own, so a reworded message that loses its code fails here."""

from __future__ import annotations

import pytest

from nacos_actors.http import envelope
from nacos_actors.http.params.base import MissingParam, ParamError

REFUSALS = [
    (400, "service not found, namespace: public, service: DEFAULT_GROUP@@a", envelope.INSTANCE_ERROR),
    (400, "service not found, namespace: public, serviceName: DEFAULT_GROUP@@a", envelope.SERVICE_NOT_EXIST),
    (400, "specified service already exists, serviceName : DEFAULT_GROUP@@a", envelope.SERVICE_ALREADY_EXIST),
    (400, "specified service not exist, serviceName : DEFAULT_GROUP@@a", envelope.SERVICE_NOT_EXIST),
    (400, "service DEFAULT_GROUP@@a not found!", envelope.SERVICE_NOT_EXIST),
    (400, "service not found:DEFAULT_GROUP@@a", envelope.SERVICE_NOT_EXIST),
    (404, "service DEFAULT_GROUP@@a is not found!", envelope.SERVICE_NOT_EXIST),
    (404, "cluster c is not found in service DEFAULT_GROUP@@a!", envelope.RESOURCE_NOT_FOUND),
    (
        400,
        "Service DEFAULT_GROUP@@a is not empty, can't be delete. Please unregister instance first",
        envelope.SERVICE_DELETE_FAILURE,
    ),
    (400, "health check is still working, service: DEFAULT_GROUP@@a", envelope.HEALTH_CHECK_STILL_RUNNING),
    (400, "instance not found", envelope.INSTANCE_NOT_FOUND),
    (400, "instance not exist: 127.0.0.1:1:unknown:DEFAULT", envelope.INSTANCE_NOT_FOUND),
    (
        400,
        "service DEFAULT_GROUP@@a already holds 10 instances, the limit (max_instances_per_service)",
        envelope.PARAMETER_VALIDATE_ERROR,
    ),
    (503, "raft has no leader; retry the request", envelope.SERVER_ERROR),
]


@pytest.mark.parametrize(("status", "message", "code"), REFUSALS)
def test_each_refusal_has_nacos_code(status, message, code):
    assert envelope.refusal_code(status, message) == code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (MissingParam("ip"), envelope.PARAMETER_MISSING),
        (ParamError("Param 'ip' is not a valid IP address: 'x'."), envelope.PARAMETER_VALIDATE_ERROR),
        (ParamError("Param 'weight' must be a finite number in 0..10000, got '-1'."), envelope.WEIGHT_ERROR),
        (ParamError("no matched ip found!", status=404), envelope.RESOURCE_NOT_FOUND),
        (ParamError("Header 'x' is missing", status=403), envelope.ACCESS_DENIED),
    ],
)
def test_each_parameter_error_has_nacos_code(error, code):
    assert envelope.param_error_code(error) == code


def test_the_envelope_carries_the_code_its_message_and_the_detail():
    response = envelope.enveloped(400, envelope.PARAMETER_MISSING, "Param 'ip' is required.")
    assert response.status == 400
    assert response.content_type == "application/json"
    assert response.body == b'{"code":10000,"message":"parameter missing","data":"Param \'ip\' is required."}'
