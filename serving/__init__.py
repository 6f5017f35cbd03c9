"""impasto.serving: a TensorFlow Serving-compatible server (`impasto serve`) and client (`impasto client`).

Server, from the request inwards:
    server_cli   flags (tensorflow_model_server's names), start-up, SIGTERM drain
    grpc_server  PredictionService, ModelService, grpc.health.v1
    rest_server  TF Serving's REST API and the Prometheus page
    predictor    the shared request path: resolve, decode, run, time and count
    registry     models, version policies and labels, polling, load before unload
    servable     one loaded version: signatures, warmup replay, in-flight count
    session_model  a SavedModel in a TensorFlow session, as tensorflow_model_server runs it
    batching     server-side batching across concurrent requests
    tensors      TensorProto / REST JSON <-> numpy, checked against a signature
    config       models.config, batching, monitoring and SSL text protos; model-root confinement
    tls          server TLS for both ports from one set of PEM files
    metrics      request counts and latency histograms (Prometheus text format)
    errors       refusals and their gRPC / HTTP status codes
    memory       glibc malloc arenas bounded (one per core) before the first thread starts; free heap
                 returned when ready
    xla          the persistent XLA compilation cache, or XLA disabled as on a stock server

Client:
    client       StylizeClient on the stock tensorflow_serving stubs
    client_cli   files and directories through a server, concurrently
"""
