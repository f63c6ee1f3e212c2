"""A database backend tiering has no backend for: Django's SQLite backend under another vendor name.

Real SQLite underneath, so Django connects, migrates and queries it as usual;
only ``vendor`` (what ``tiering.backends`` looks up) is one tiering does not know.
"""
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper


class DatabaseWrapper(SQLiteDatabaseWrapper):
    vendor = "standin"
    display_name = "Stand-in"
