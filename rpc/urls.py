from django.urls import path

from .views import MethodsView, RpcView

urlpatterns = [
    path("rpc", RpcView.as_view(), name="rpc"),
    path("rpc/methods", MethodsView.as_view(), name="rpc-methods"),
]
