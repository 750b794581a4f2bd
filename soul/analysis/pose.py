"""Head pose (yaw, pitch, roll) from 2-D facial landmarks.

With 68 iBUG landmarks the pose is solved by OpenCV's ``solvePnP`` against a
generic 3-D face model (the six-point model popularised by
https://learnopencv.com/head-pose-estimation-using-opencv-and-dlib/).
With only the 5 keypoints, yaw and pitch are estimated from the nose offset
relative to the eyes and mouth, roll from the eye line.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from .base import HeadPose

# Generic 3-D model points (millimetres, x right, y up, z toward the camera):
# nose tip, chin, left eye outer corner, right eye outer corner, mouth left, mouth right.
_MODEL_3D = np.array(
    [
        (0.0, 0.0, 0.0),
        (0.0, -330.0, -65.0),
        (-225.0, 170.0, -135.0),
        (225.0, 170.0, -135.0),
        (-150.0, -150.0, -125.0),
        (150.0, -150.0, -125.0),
    ],
    dtype=np.float64,
)
_IDX_68 = [30, 8, 36, 45, 48, 54]


def _wrap(a: float) -> float:
    """Map an angle in degrees to (-90, 90] (the model is symmetric front/back)."""
    a = (a + 180.0) % 360.0 - 180.0
    if a > 90:
        a -= 180
    elif a <= -90:
        a += 180
    return a


def pose_from_68(landmarks: np.ndarray, image_size: tuple[int, int]) -> HeadPose:
    """Head pose from ``[68, 2]`` landmarks in an image of ``(height, width)``."""
    h, w = image_size
    pts = np.asarray(landmarks, dtype=np.float64)[_IDX_68]
    f = float(max(h, w))
    cam = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(_MODEL_3D, pts, cam, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return pose_from_5(_five_from_68(landmarks))
    rot, _ = cv2.Rodrigues(rvec)
    # Image y points down and the model's y points up: flip y and z to get a
    # rotation expressed in the model frame.
    flip = np.diag([1.0, -1.0, -1.0])
    r = flip @ rot
    sy = math.hypot(r[0, 0], r[1, 0])
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = math.degrees(math.atan2(-r[2, 0], sy))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return HeadPose(yaw=-_wrap(yaw), pitch=_wrap(pitch), roll=-_wrap(roll))


def _five_from_68(lm: np.ndarray) -> np.ndarray:
    lm = np.asarray(lm, dtype=np.float32)
    return np.stack(
        [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]
    ).astype(np.float32)


def pose_from_5(kps: np.ndarray) -> HeadPose:
    """Approximate head pose from ``[5, 2]`` keypoints (eyes, nose, mouth corners).

    Yaw from the nose's horizontal offset from the eye/mouth mid-line, in units
    of half the inter-ocular distance (``asin`` of it, in degrees); pitch
    likewise vertically; roll from the eye line. Good to about ±10° in the
    frontal range, enough for ``front | three_quarter | profile`` classes.
    """
    k = np.asarray(kps, dtype=np.float64)
    le, re, nose, ml, mr = k
    roll = math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))
    # Rotate into an upright frame so that the eye line is horizontal.
    c, s = math.cos(math.radians(-roll)), math.sin(math.radians(-roll))
    rot = np.array([[c, -s], [s, c]])
    le, re, nose, ml, mr = (rot @ p for p in (le, re, nose, ml, mr))
    eye_mid = (le + re) / 2
    mouth_mid = (ml + mr) / 2
    half_iod = max(abs(re[0] - le[0]) / 2, 1e-6)
    mid_x = (eye_mid[0] + mouth_mid[0]) / 2
    x = float(np.clip((nose[0] - mid_x) / (half_iod * 1.2), -1, 1))
    yaw = math.degrees(math.asin(x))
    face_h = max(mouth_mid[1] - eye_mid[1], 1e-6)
    # In a frontal face the nose tip sits ~55% of the way from eyes to mouth.
    y = float(np.clip(((nose[1] - eye_mid[1]) / face_h - 0.55) / 0.5, -1, 1))
    pitch = -math.degrees(math.asin(y))
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll)


def pose_class(pose: HeadPose) -> str:
    """``"front"`` (|yaw| < 20°), ``"three_quarter"`` (< 50°) or ``"profile"``."""
    a = abs(pose.yaw)
    if a < 20:
        return "front"
    if a < 50:
        return "three_quarter"
    return "profile"


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean eye aspect ratio (Soukupová & Čech, CVWW 2016) of both eyes from
    ``[68, 2]`` landmarks. About 0.25-0.35 open, below ~0.15 closed."""
    lm = np.asarray(landmarks, dtype=np.float64)

    def ear(e):
        a = np.linalg.norm(e[1] - e[5])
        b = np.linalg.norm(e[2] - e[4])
        c = np.linalg.norm(e[0] - e[3])
        return (a + b) / (2.0 * max(c, 1e-6))

    return float((ear(lm[36:42]) + ear(lm[42:48])) / 2.0)
