"""Durable state outside the event logs: conversation metadata, start tasks, user settings."""

from __future__ import annotations

from .conversations import (
    ConversationMetadata,
    ConversationPage,
    ConversationQuery,
    ConversationStore,
    StartTask,
    StartTaskPage,
    StartTaskQuery,
    StartTaskStatus,
)
from .settings import SettingsError, SettingsStore, SettingsUpdate, UserSettings

__all__ = [
    "ConversationMetadata",
    "ConversationPage",
    "ConversationQuery",
    "ConversationStore",
    "SettingsError",
    "SettingsStore",
    "SettingsUpdate",
    "StartTask",
    "StartTaskPage",
    "StartTaskQuery",
    "StartTaskStatus",
    "UserSettings",
]
