from django.apps import AppConfig


class ChromaConfig(AppConfig):
    name = "chroma"
    verbose_name = "Chroma vector service"
