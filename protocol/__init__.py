"""The pixels wire protocol: messages, envelope, codec and limits. Pure: no sockets, no clock.

Import what you need from ``protocol.messages``, ``protocol.codec`` and ``protocol.views``; this
package module stays empty so that importing it costs nothing (pixelsctl's start-up is measured).
"""
