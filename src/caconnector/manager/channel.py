"""Placeholder until its owner fills it in (being written now)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
