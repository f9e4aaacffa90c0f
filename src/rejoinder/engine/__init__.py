"""The sans-I/O skill runtime: state + input → messages, new state, effects."""

from rejoinder.engine.runtime import (
    ConversationClosed,
    Engine,
    EngineError,
    InvalidChoice,
    UnknownEvent,
    VariableNotSettable,
)
from rejoinder.engine.types import (
    BotMessage,
    CloseConversation,
    ConversationState,
    CustomerChoice,
    CustomerText,
    HttpCall,
    HttpResponse,
    Input,
    IssueToken,
    NewToken,
    Pending,
    StartEvent,
    StepResult,
    TurnContext,
)

__all__ = [
    "BotMessage",
    "CloseConversation",
    "ConversationClosed",
    "ConversationState",
    "CustomerChoice",
    "CustomerText",
    "Engine",
    "EngineError",
    "HttpCall",
    "HttpResponse",
    "Input",
    "InvalidChoice",
    "IssueToken",
    "NewToken",
    "Pending",
    "StartEvent",
    "StepResult",
    "TurnContext",
    "UnknownEvent",
    "VariableNotSettable",
]
