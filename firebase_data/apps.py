from django.apps import AppConfig


class FirebaseDataConfig(AppConfig):
    name = "firebase_data"
    verbose_name = "Firestore and Realtime Database operations (FIREBASE_MANAGEMENT / FIREBASE_REALTIME)"
