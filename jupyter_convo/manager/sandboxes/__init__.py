"""manager/sandboxes"""
