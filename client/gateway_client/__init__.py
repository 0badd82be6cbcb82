"""Client of the realtime gateway for the Reflex app: RPC proxies (sync and async), Chroma proxies, events.

    from gateway_client import configure, FirebaseManagement, EventConsumer
    configure("http://gateway:8090", token=os.environ["LISTENERS_SERVICE_TOKEN"])
    FirebaseManagement(user_id=uid).add_or_update_job_by_job_id(f"clients/{uid}/notifications", job)
"""
from ._protocol import NO_RETRY, Reply, RetryPolicy
from .catalogue import Catalogue, MethodInfo
from .chroma import ChromaAnalyzer, ChromaCollection, ChromaVectorService, get_chroma_vector_proxy
from .errors import (
    Attempt, ConsumerRefused, GatewayError, GatewayUnreachable, IdempotencyConflict, IdempotencyMismatch, Internal,
    InvalidApiVersion, InvalidArgs, InvalidRequest, MethodNotFound, NotFound, PermissionDenied, ProtocolError,
    RpcError, RpcTimeout, Unauthenticated, Unavailable, UnknownMethod,
)
from .events import Backoff, ConsumerStats, EventConsumer
from .proxies import FireBaseManagement, FirebaseManagement, FirebaseRealtimeChat, NamespaceProxy, Registry
from .rpc import (
    AsyncRpcClient, RpcClient, __version__, configure, default_async_client, default_client, default_settings,
)

__all__ = [
    "AsyncRpcClient", "Attempt", "Backoff", "Catalogue", "ChromaAnalyzer", "ChromaCollection", "ChromaVectorService",
    "ConsumerRefused", "ConsumerStats", "EventConsumer", "FireBaseManagement", "FirebaseManagement",
    "FirebaseRealtimeChat", "GatewayError", "GatewayUnreachable", "IdempotencyConflict", "IdempotencyMismatch",
    "Internal", "InvalidApiVersion", "InvalidArgs", "InvalidRequest", "MethodInfo", "MethodNotFound", "NO_RETRY",
    "NamespaceProxy", "NotFound", "PermissionDenied", "ProtocolError", "Registry", "Reply", "RetryPolicy",
    "RpcClient", "RpcError", "RpcTimeout", "Unauthenticated", "Unavailable", "UnknownMethod", "__version__",
    "configure", "default_async_client", "default_client", "default_settings", "get_chroma_vector_proxy",
]
