"""realtime/backend"""
