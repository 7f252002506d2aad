"""Serving the pushed fakefaces model through the TensorFlow Serving APIs.

Production runs the official `tensorflow/serving` image (see `models.config`).
Where no `tensorflow_model_server` binary exists, `fakefaces.serving.server.ModelServer`
speaks the same protocol itself: gRPC `PredictionService`/`ModelService` from
the official `tensorflow_serving.apis` stubs and the `/v1/models` REST API, with
versions hot-swapped from the Pusher's base directory (`fakefaces.serving.versions`).
`fakefaces.serving.client.ServingClient` talks to either server.
"""
